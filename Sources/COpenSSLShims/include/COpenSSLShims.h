#ifndef UPKEEP_COPENSSL_SHIMS_H
#define UPKEEP_COPENSSL_SHIMS_H
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

/* Wrappers for OpenSSL macros, which Swift cannot import. */
long upkeep_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version);
long upkeep_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version);
long upkeep_SSL_CTX_set_mode(SSL_CTX *ctx, long mode);
long upkeep_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode);
int upkeep_SSL_CTX_set1_groups_list(SSL_CTX *ctx, const char *list);
long upkeep_SSL_set_tlsext_host_name(SSL *ssl, const char *name);
size_t upkeep_BIO_pending(BIO *bio);
void upkeep_OPENSSL_free(void *ptr);
int upkeep_TLS1_2_VERSION(void);
int upkeep_TLS1_3_VERSION(void);
uint64_t upkeep_SSL_OP_NO_COMPRESSION(void);
uint64_t upkeep_SSL_OP_NO_RENEGOTIATION(void);
uint64_t upkeep_SSL_OP_NO_TICKET(void);
uint64_t upkeep_SSL_OP_IGNORE_UNEXPECTED_EOF(void);
int upkeep_SSL_get_ex_data_X509_STORE_CTX_idx(void);
int upkeep_SSL_get_new_ex_index(void);
int upkeep_BIO_set_mem_eof_return(BIO *bio, int value);
int upkeep_sk_X509_num(void *stack);
X509 *upkeep_sk_X509_value(void *stack, int index);
long upkeep_SSL_CTX_add1_chain_cert(SSL_CTX *ctx, X509 *x509);
int upkeep_ERR_GET_REASON(unsigned long code);
/* OpenSSL's error strings: initialised without them, loaded later by library (OpenSSLErrorStrings). */
int upkeep_OPENSSL_init_without_error_strings(void);
void upkeep_ERR_load_strings_of_every_library(void);
int upkeep_ERR_GET_LIB(unsigned long code);
/* UpkeepPKI: distinguished names printed as RFC 2253 with UTF-8 kept as UTF-8. */
unsigned long upkeep_XN_FLAG_RFC2253_UTF8(void);
void upkeep_BIO_set_retry_read(BIO *bio);
void upkeep_BIO_clear_retry_flags(BIO *bio);
#endif
