/*
 * Framing of a QMP byte stream into JSON texts.
 *
 * QMP input is a byte stream, not lines: a request may arrive in pieces
 * or several in one read.  The framer tracks brace/bracket depth outside
 * strings (with escapes) and hands each complete top-level value to a
 * callback.  A value larger than max_size or nested deeper than max_depth
 * is reported once and then skipped to its end without being stored, so
 * memory stays bounded whatever the peer sends.
 */
#ifndef AMBER_MONITOR_JSON_STREAM_H
#define AMBER_MONITOR_JSON_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>
#include <json-glib/json-glib.h>

#define QMP_MAX_REQUEST_SIZE  (1024 * 1024)
#define QMP_MAX_REQUEST_DEPTH 64

/*
 * Exactly one of text (a complete value, NUL-terminated, len bytes) and
 * error (why the input was rejected) is non-NULL.
 */
typedef void (*JsonStreamFn)(void *opaque, const char *text, size_t len,
                             const char *error);

typedef struct JsonStream {
    GString *buf;
    size_t max_size;
    int max_depth;
    int depth;              /* open braces/brackets of the current value */
    bool in_string;
    bool escape;
    bool skipping;          /* rejected value: consume to its end, store nothing */
    JsonStreamFn fn;
    void *opaque;
} JsonStream;

void json_stream_init(JsonStream *js, size_t max_size, int max_depth,
                      JsonStreamFn fn, void *opaque);
void json_stream_feed(JsonStream *js, const uint8_t *data, size_t len);
/* Forget any partial value (the peer disconnected). */
void json_stream_reset(JsonStream *js);
void json_stream_destroy(JsonStream *js);

/* Serialize as QEMU does: ", " and ": " separators, non-ASCII as \uXXXX. */
void qmp_json_append(GString *out, JsonNode *node);
char *qmp_json_to_string(JsonNode *node);

#endif
