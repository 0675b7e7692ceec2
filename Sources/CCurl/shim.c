// See cce4_curl.h: one typed function per variadic libcurl call the Swift code needs.
#include "cce4_curl.h"
#include <pthread.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int init_rc;
static void do_init(void) { init_rc = (int)curl_global_init(CURL_GLOBAL_DEFAULT); }
int cce4_curl_global_init(void) { pthread_once(&once, do_init); return init_rc; }

int cce4_curl_setopt_long(CURL *h, CURLoption opt, long value) { return (int)curl_easy_setopt(h, opt, value); }
int cce4_curl_setopt_string(CURL *h, CURLoption opt, const char *value) { return (int)curl_easy_setopt(h, opt, value); }
int cce4_curl_setopt_pointer(CURL *h, CURLoption opt, void *value) { return (int)curl_easy_setopt(h, opt, value); }
int cce4_curl_setopt_offset(CURL *h, CURLoption opt, curl_off_t value) { return (int)curl_easy_setopt(h, opt, value); }

int cce4_curl_set_write(CURL *h, cce4_curl_data_cb cb, void *userdata) {
    CURLcode rc = curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, cb);
    return rc != CURLE_OK ? (int)rc : (int)curl_easy_setopt(h, CURLOPT_WRITEDATA, userdata);
}
int cce4_curl_set_header(CURL *h, cce4_curl_data_cb cb, void *userdata) {
    CURLcode rc = curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, cb);
    return rc != CURLE_OK ? (int)rc : (int)curl_easy_setopt(h, CURLOPT_HEADERDATA, userdata);
}
int cce4_curl_set_read(CURL *h, cce4_curl_data_cb cb, void *userdata) {
    CURLcode rc = curl_easy_setopt(h, CURLOPT_READFUNCTION, cb);
    return rc != CURLE_OK ? (int)rc : (int)curl_easy_setopt(h, CURLOPT_READDATA, userdata);
}

long cce4_curl_response_code(CURL *h) {
    long code = 0;
    if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK) return 0;
    return code;
}

long cce4_curl_num_connects(CURL *h) {
    long n = 0;
    if (curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &n) != CURLE_OK) return 0;
    return n;
}
