#include "COpenSSLShims.h"
#include <openssl/ssl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <openssl/err.h>

long upkeep_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) { return SSL_CTX_set_min_proto_version(ctx, version); }
long upkeep_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version) { return SSL_CTX_set_max_proto_version(ctx, version); }
long upkeep_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_mode(ctx, mode); }
long upkeep_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_session_cache_mode(ctx, mode); }
int upkeep_SSL_CTX_set1_groups_list(SSL_CTX *ctx, const char *list) { return (int)SSL_CTX_set1_groups_list(ctx, list); }
long upkeep_SSL_set_tlsext_host_name(SSL *ssl, const char *name) { return SSL_set_tlsext_host_name(ssl, name); }
size_t upkeep_BIO_pending(BIO *bio) { return (size_t)BIO_pending(bio); }
void upkeep_OPENSSL_free(void *ptr) { OPENSSL_free(ptr); }
int upkeep_TLS1_2_VERSION(void) { return TLS1_2_VERSION; }
int upkeep_TLS1_3_VERSION(void) { return TLS1_3_VERSION; }
uint64_t upkeep_SSL_OP_NO_COMPRESSION(void) { return SSL_OP_NO_COMPRESSION; }
uint64_t upkeep_SSL_OP_NO_RENEGOTIATION(void) { return SSL_OP_NO_RENEGOTIATION; }
uint64_t upkeep_SSL_OP_NO_TICKET(void) { return SSL_OP_NO_TICKET; }
uint64_t upkeep_SSL_OP_IGNORE_UNEXPECTED_EOF(void) { return SSL_OP_IGNORE_UNEXPECTED_EOF; }
int upkeep_SSL_get_ex_data_X509_STORE_CTX_idx(void) { return SSL_get_ex_data_X509_STORE_CTX_idx(); }
int upkeep_SSL_get_new_ex_index(void) { return SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL); }
int upkeep_BIO_set_mem_eof_return(BIO *bio, int value) { return (int)BIO_set_mem_eof_return(bio, value); }
int upkeep_sk_X509_num(void *stack) { return sk_X509_num((STACK_OF(X509) *)stack); }
X509 *upkeep_sk_X509_value(void *stack, int index) { return sk_X509_value((STACK_OF(X509) *)stack, index); }
long upkeep_SSL_CTX_add1_chain_cert(SSL_CTX *ctx, X509 *x509) { return SSL_CTX_add1_chain_cert(ctx, x509); }
int upkeep_ERR_GET_REASON(unsigned long code) { return ERR_GET_REASON(code); }
int upkeep_ERR_GET_LIB(unsigned long code) { return ERR_GET_LIB(code); }
unsigned long upkeep_XN_FLAG_RFC2253_UTF8(void) { return XN_FLAG_RFC2253 & ~(unsigned long)ASN1_STRFLGS_ESC_MSB; }
void upkeep_BIO_set_retry_read(BIO *bio) { BIO_set_retry_read(bio); }
void upkeep_BIO_clear_retry_flags(BIO *bio) { BIO_clear_retry_flags(bio); }
