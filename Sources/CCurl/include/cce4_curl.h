// C fence for libcurl: Swift cannot call the variadic curl_easy_setopt/curl_easy_getinfo or
// see the CURLOPT_* macros' types, so each need gets one typed function here. Nothing else.
#ifndef CCE4_CURL_H
#define CCE4_CURL_H
#include <curl/curl.h>
#include <stddef.h>

typedef size_t (*cce4_curl_data_cb)(char *ptr, size_t size, size_t nmemb, void *userdata);

/// curl_global_init(CURL_GLOBAL_DEFAULT), once per process (thread-safe here).
int cce4_curl_global_init(void);

/// curl_easy_setopt with a long, a string (copied by libcurl), or a pointer argument.
int cce4_curl_setopt_long(CURL *h, CURLoption opt, long value);
int cce4_curl_setopt_string(CURL *h, CURLoption opt, const char *value);
int cce4_curl_setopt_pointer(CURL *h, CURLoption opt, void *value);
int cce4_curl_setopt_offset(CURL *h, CURLoption opt, curl_off_t value);

/// CURLOPT_WRITEFUNCTION/WRITEDATA, CURLOPT_HEADERFUNCTION/HEADERDATA and
/// CURLOPT_READFUNCTION/READDATA: typed function-pointer arguments.
int cce4_curl_set_write(CURL *h, cce4_curl_data_cb cb, void *userdata);
int cce4_curl_set_header(CURL *h, cce4_curl_data_cb cb, void *userdata);
int cce4_curl_set_read(CURL *h, cce4_curl_data_cb cb, void *userdata);

/// curl_easy_getinfo(CURLINFO_RESPONSE_CODE).
long cce4_curl_response_code(CURL *h);

/// curl_easy_getinfo(CURLINFO_NUM_CONNECTS): new connections the last transfer had to open
/// (0 when it reused a pooled one).
long cce4_curl_num_connects(CURL *h);

/// The option numbers Swift cannot import as constants of the right type.
enum {
    CCE4_CURLOPT_URL = CURLOPT_URL,
    CCE4_CURLOPT_CUSTOMREQUEST = CURLOPT_CUSTOMREQUEST,
    CCE4_CURLOPT_HTTPHEADER = CURLOPT_HTTPHEADER,
    CCE4_CURLOPT_NOBODY = CURLOPT_NOBODY,
    CCE4_CURLOPT_UPLOAD = CURLOPT_UPLOAD,
    CCE4_CURLOPT_INFILESIZE_LARGE = CURLOPT_INFILESIZE_LARGE,
    CCE4_CURLOPT_POST = CURLOPT_POST,
    CCE4_CURLOPT_HTTPGET = CURLOPT_HTTPGET,
    CCE4_CURLOPT_AWS_SIGV4 = CURLOPT_AWS_SIGV4,
    CCE4_CURLOPT_USERNAME = CURLOPT_USERNAME,
    CCE4_CURLOPT_PASSWORD = CURLOPT_PASSWORD,
    CCE4_CURLOPT_CONNECTTIMEOUT_MS = CURLOPT_CONNECTTIMEOUT_MS,
    CCE4_CURLOPT_LOW_SPEED_LIMIT = CURLOPT_LOW_SPEED_LIMIT,
    CCE4_CURLOPT_LOW_SPEED_TIME = CURLOPT_LOW_SPEED_TIME,
    CCE4_CURLOPT_TIMEOUT_MS = CURLOPT_TIMEOUT_MS,
    CCE4_CURLOPT_NOSIGNAL = CURLOPT_NOSIGNAL,
    CCE4_CURLOPT_SSL_VERIFYPEER = CURLOPT_SSL_VERIFYPEER,
    CCE4_CURLOPT_SSL_VERIFYHOST = CURLOPT_SSL_VERIFYHOST,
    CCE4_CURLOPT_CAINFO = CURLOPT_CAINFO,
    CCE4_CURLOPT_TCP_KEEPALIVE = CURLOPT_TCP_KEEPALIVE,
    CCE4_CURLOPT_ERRORBUFFER = CURLOPT_ERRORBUFFER,
    CCE4_CURLOPT_PROTOCOLS_STR = CURLOPT_PROTOCOLS_STR,
    CCE4_CURLOPT_FOLLOWLOCATION = CURLOPT_FOLLOWLOCATION,
    CCE4_CURLOPT_POSTFIELDSIZE_LARGE = CURLOPT_POSTFIELDSIZE_LARGE,
    CCE4_CURLOPT_EXPECT_100_TIMEOUT_MS = CURLOPT_EXPECT_100_TIMEOUT_MS,
};
enum { CCE4_CURL_ERROR_SIZE = CURL_ERROR_SIZE };

#endif
