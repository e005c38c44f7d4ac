/*
 * ws.h: the WebSocket core (RFC 6455 and RFC 7692 permessage-deflate).
 *
 * The opening handshake's checks and accept key, an incremental frame
 * decoder that reassembles messages and validates everything a server must
 * (masking, fragmentation, control frames, close codes, UTF-8, size), the
 * frame encoder, and the deflate extension's negotiation and codec. Nothing
 * here does I/O or knows about Python: the ASGI driver owns the socket and
 * the application, this core owns the bytes.
 */
#ifndef NW_WS_H
#define NW_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Opcodes (RFC 6455 5.2). */
enum nw_ws_opcode {
	NW_WS_OP_CONT = 0x0,
	NW_WS_OP_TEXT = 0x1,
	NW_WS_OP_BINARY = 0x2,
	NW_WS_OP_CLOSE = 0x8,
	NW_WS_OP_PING = 0x9,
	NW_WS_OP_PONG = 0xa,
};

/* Close codes (RFC 6455 7.4.1 and the IANA registry). */
enum nw_ws_close_code {
	NW_WS_CLOSE_NORMAL = 1000,
	NW_WS_CLOSE_GOING_AWAY = 1001,
	NW_WS_CLOSE_PROTOCOL = 1002,
	NW_WS_CLOSE_UNSUPPORTED = 1003,
	NW_WS_CLOSE_NO_STATUS = 1005, /* never on the wire */
	NW_WS_CLOSE_ABNORMAL = 1006,  /* never on the wire */
	NW_WS_CLOSE_INVALID_DATA = 1007,
	NW_WS_CLOSE_POLICY = 1008,
	NW_WS_CLOSE_TOO_BIG = 1009,
	NW_WS_CLOSE_EXTENSION = 1010,
	NW_WS_CLOSE_INTERNAL = 1011,
	NW_WS_CLOSE_RESTART = 1012,
	NW_WS_CLOSE_TRY_AGAIN = 1013,
};

/* uvicorn's --ws-max-size default. */
#define NW_WS_MAX_SIZE_DEFAULT (16u * 1024 * 1024)
/* 2 + 8 bytes of length + 4 of mask: the longest frame header. */
#define NW_WS_HEADER_MAX 14
/* A control frame's payload (RFC 6455 5.5). */
#define NW_WS_CONTROL_MAX 125
/* base64 of a 20-byte SHA-1, plus the NUL. */
#define NW_WS_ACCEPT_LEN 28

/* ---- handshake (ws_handshake.c) ---- */

/*
 * Sec-WebSocket-Key must be the base64 of 16 bytes (RFC 6455 4.2.1).
 * Returns true if it is.
 */
bool nw_ws_key_valid(const char *key, size_t len);

/*
 * Sec-WebSocket-Accept for a key: base64(SHA-1(key + GUID)), written to out
 * with a terminating NUL. Returns 0, or -1 if libcrypto failed.
 */
int nw_ws_accept_key(
    const char *key, size_t len, char out[NW_WS_ACCEPT_LEN + 1]);

/*
 * Whether a comma-separated header value (Connection, Upgrade) lists token,
 * case-insensitively, with optional whitespace around the elements.
 */
bool nw_ws_list_has(const char *list, size_t len, const char *token);

/* ---- UTF-8 (ws_utf8.c) ---- */

/*
 * Incremental UTF-8 validation (RFC 3629: no surrogates, no overlongs,
 * nothing above U+10FFFF), so that a text message split across frames or
 * reads is rejected at its first bad byte.
 */
struct nw_utf8 {
	uint8_t need; /* continuation bytes still expected */
	uint8_t lo;   /* bounds for the next continuation byte */
	uint8_t hi;
};

/* Returns 0 while the bytes so far can start valid UTF-8, -1 if not. */
int nw_utf8_feed(struct nw_utf8 *u, const unsigned char *p, size_t n);

static inline bool
nw_utf8_complete(const struct nw_utf8 *u)
{
	return u->need == 0;
}

/* One-shot check of a whole string. */
bool nw_utf8_valid(const unsigned char *p, size_t n);

/* ---- permessage-deflate (ws_deflate.c) ---- */

/* What this server is willing to do; from the config. */
struct nw_ws_pmd_config {
	bool enabled;
	/* Our compressor's window (9..15): 2^bits bytes of history each. */
	uint8_t server_max_window_bits;
	/* Asked of the client when it offers client_max_window_bits (8..15). */
	uint8_t client_max_window_bits;
	/* zlib memLevel of our compressor (1..9). */
	uint8_t mem_level;
	/* Reset our compressor after every message (less memory, worse). */
	bool server_no_context_takeover;
	/* Smaller messages are sent uncompressed (RFC 7692 allows either). */
	uint32_t min_size;
};

/* websockets' (and so uvicorn's) server defaults: 12-bit windows, memLevel 5.
 */
#define NW_WS_PMD_CONFIG_DEFAULT                                               \
	{                                                                      \
		.enabled = true, .server_max_window_bits = 12,                 \
		.client_max_window_bits = 12, .mem_level = 5,                  \
		.server_no_context_takeover = false, .min_size = 0,            \
	}

/*
 * The negotiated extension and its two zlib streams, allocated on first use
 * so that an idle socket costs no zlib memory.
 */
struct nw_ws_pmd {
	bool on;
	uint8_t server_bits; /* our compressor's window */
	uint8_t client_bits; /* the client's compressor's window */
	bool server_no_context_takeover;
	bool client_no_context_takeover;
	uint8_t mem_level;
	uint32_t min_size;
	void *inflater; /* z_stream *, NULL until the first compressed frame */
	void *deflater; /* z_stream *, NULL until the first compressed send */
	bool ended;     /* the message's DEFLATE stream had a final block */
};

/*
 * Picks the first acceptable permessage-deflate offer of a
 * Sec-WebSocket-Extensions value (several header lines joined with ", ").
 * On success fills pmd, writes the response header's value to resp (NUL
 * terminated) and returns 1; returns 0 if no offer is acceptable (the
 * connection goes on without compression). Malformed offers are declined.
 */
int nw_ws_pmd_negotiate(const struct nw_ws_pmd_config *cfg, const char *value,
    size_t len, struct nw_ws_pmd *pmd, char *resp, size_t resp_size);

/*
 * Compresses one whole outgoing message into *out (malloc'd or grown with
 * realloc; *cap tracks its size), without the trailing 00 00 ff ff.
 * Returns the compressed length, or -1 on allocation failure.
 */
long nw_ws_pmd_deflate(struct nw_ws_pmd *pmd, const void *data, size_t len,
    unsigned char **out, size_t *cap);

/* Frees both zlib streams; the struct may be reused after pmd->on = false. */
void nw_ws_pmd_free(struct nw_ws_pmd *pmd);

/* For the frame decoder: nw_ws_pmd_inflate's results. */
enum nw_pmd_result {
	NW_PMD_NOMEM = -2,
	NW_PMD_FAIL = -1, /* not a DEFLATE stream */
	NW_PMD_OK = 0,
	NW_PMD_END =
	    1, /* a BFINAL block ended; the rest of the message is ignored */
};

/*
 * Inflates from *in (advanced, *inlen decremented) into out[0..*outlen),
 * and sets *outlen to the bytes written.
 */
enum nw_pmd_result nw_ws_pmd_inflate(struct nw_ws_pmd *pmd,
    const unsigned char **in, size_t *inlen, unsigned char *out,
    size_t *outlen);

/* The end of a compressed message: reset the stream if no takeover. */
void nw_ws_pmd_inflate_done(struct nw_ws_pmd *pmd);

/* ---- frames (ws_frame.c) ---- */

enum nw_ws_result {
	NW_WS_ERROR = -1, /* fail the connection with p->close_code */
	NW_WS_AGAIN = 0,  /* every byte was used; need more */
	NW_WS_EVENT = 1,  /* *ev is filled; call again with the rest */
};

enum nw_ws_event_type {
	NW_WS_EV_TEXT = 1, /* a whole text message, valid UTF-8 */
	NW_WS_EV_BINARY,   /* a whole binary message */
	NW_WS_EV_PING,
	NW_WS_EV_PONG,
	NW_WS_EV_CLOSE, /* code (1005 if none) and reason in data/len */
};

/*
 * What the decoder found. data points into the caller's input or into the
 * parser's message buffer, and stays valid until the next call of
 * nw_ws_parse or until the caller reuses the input bytes.
 */
struct nw_ws_event {
	enum nw_ws_event_type type;
	const unsigned char *data;
	size_t len;
	uint16_t code; /* NW_WS_EV_CLOSE only */
};

/*
 * The incremental decoder of a server's incoming frames. Zero it, set
 * max_size (0: unlimited) and pmd (NULL: no extension), then feed it bytes.
 */
struct nw_ws_parser {
	uint64_t max_size;     /* largest message, after inflating */
	struct nw_ws_pmd *pmd; /* negotiated deflate, or NULL */

	/* the frame being read */
	int state;
	unsigned char hdr[NW_WS_HEADER_MAX];
	uint8_t hdr_have;
	uint8_t hdr_need;
	uint8_t opcode;
	bool fin;
	bool rsv1;
	uint8_t mask[4];
	uint8_t mask_off;
	uint64_t left; /* payload bytes of this frame not seen yet */

	/* the data message being assembled across frames */
	uint8_t msg_opcode; /* NW_WS_OP_TEXT or _BINARY, 0 between messages */
	bool msg_deflated;
	struct nw_utf8 utf8;
	unsigned char *msg;
	size_t msg_len;
	size_t msg_cap;

	/* the control frame being assembled */
	unsigned char ctl[NW_WS_CONTROL_MAX];
	uint8_t ctl_len;

	/* after NW_WS_ERROR: the close code to send and why */
	uint16_t close_code;
	const char *error;
};

/*
 * Decodes from in[0..len): unmasks in place (so in is written to), and
 * returns at the first complete message or control frame, or when the input
 * is used up, or at the first violation. *used says how many bytes were
 * consumed; bytes consumed are never needed again.
 */
enum nw_ws_result nw_ws_parse(struct nw_ws_parser *p, unsigned char *in,
    size_t len, size_t *used, struct nw_ws_event *ev);

/* Frees the message buffer (not pmd). */
void nw_ws_parser_free(struct nw_ws_parser *p);

/*
 * Writes a frame header to out and returns its length (2, 4 or 10 bytes, or
 * 4 more with a mask). A server sends with mask == NULL; a client (the tests
 * and the benchmark) passes its masking key.
 */
size_t nw_ws_header(unsigned char out[NW_WS_HEADER_MAX], unsigned opcode,
    bool fin, bool rsv1, uint64_t len, const uint8_t *mask);

/* XORs p[0..n) with the key, starting at key offset off (0..3). */
void nw_ws_mask(unsigned char *p, size_t n, const uint8_t key[4], unsigned off);

/* Whether a peer may send this close code (RFC 6455 7.4). */
bool nw_ws_close_code_valid(unsigned code);

/*
 * Builds a close frame's payload: the code and as much of reason as fits
 * in 123 bytes, cut at a character boundary. code 1005 gives an empty
 * payload. Returns the payload length.
 */
size_t nw_ws_close_payload(unsigned char out[NW_WS_CONTROL_MAX], unsigned code,
    const char *reason, size_t reason_len);

#endif
