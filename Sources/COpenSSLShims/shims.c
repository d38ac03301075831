/* The per-library error string loaders are deprecated in OpenSSL 3.0 but remain the only way to
 * load the strings after OPENSSL_INIT_NO_LOAD_*_STRINGS (upkeep_ERR_load_strings_of_every_library). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "COpenSSLShims.h"
#include <openssl/ssl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <openssl/err.h>
#include <openssl/cryptoerr_legacy.h>
#include <openssl/sslerr_legacy.h>

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

int upkeep_OPENSSL_init_without_error_strings(void) {
    return OPENSSL_init_ssl(OPENSSL_INIT_NO_LOAD_SSL_STRINGS | OPENSSL_INIT_NO_LOAD_CRYPTO_STRINGS, NULL);
}

/* What OPENSSL_INIT_LOAD_CRYPTO_STRINGS and OPENSSL_INIT_LOAD_SSL_STRINGS load, through the legacy
 * per-library loaders (https://www.openssl.org/docs/man3.0/man3/ERR_load_crypto_strings.html);
 * the provider's own reason strings have no public loader and print as reason(N). */
void upkeep_ERR_load_strings_of_every_library(void) {
    ERR_load_ERR_strings(); ERR_load_ASN1_strings(); ERR_load_ASYNC_strings(); ERR_load_BIO_strings();
    ERR_load_BN_strings(); ERR_load_BUF_strings(); ERR_load_CMS_strings(); ERR_load_COMP_strings();
    ERR_load_CONF_strings(); ERR_load_CRYPTO_strings(); ERR_load_CT_strings(); ERR_load_DH_strings();
    ERR_load_DSA_strings(); ERR_load_EC_strings(); ERR_load_ENGINE_strings(); ERR_load_EVP_strings();
    ERR_load_KDF_strings(); ERR_load_OBJ_strings(); ERR_load_OCSP_strings(); ERR_load_OSSL_STORE_strings();
    ERR_load_PEM_strings(); ERR_load_PKCS12_strings(); ERR_load_PKCS7_strings(); ERR_load_RAND_strings();
    ERR_load_RSA_strings(); ERR_load_SSL_strings(); ERR_load_TS_strings(); ERR_load_UI_strings();
    ERR_load_X509V3_strings(); ERR_load_X509_strings();
}
