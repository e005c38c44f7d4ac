/*
 * ws_frame.c: the WebSocket frame decoder and encoder (RFC 6455 5 and 7).
 *
 * The decoder is a server's: every client frame must be masked, reserved
 * bits and opcodes are errors unless an extension claims them, control
 * frames are short, unfragmented and may arrive between the fragments of a
 * message, and a text message must be UTF-8 as a whole. It consumes bytes as
 * they come (a header may be split anywhere), unmasks in place, and hands
 * back one whole message or control frame at a time; a message that is one
 * frame and already in the input is handed back where it lies, without a
 * copy. Every violation ends in NW_WS_ERROR with the close code to send:
 * 1002 for framing, 1007 for bad data, 1009 for size. No I/O here.
 */
#include <stdlib.h>
#include <string.h>

#include "ws.h"

enum parser_state {
	ST_HEADER = 0,
	ST_PAYLOAD,
	ST_FAILED,
};

/* A message buffer this big is freed once its message was handed back. */
#define MSG_KEEP (64 * 1024)

static enum nw_ws_result
fail(struct nw_ws_parser *p, uint16_t code, const char *why)
{
	p->state = ST_FAILED;
	p->close_code = code;
	p->error = why;
	return NW_WS_ERROR;
}

void
nw_ws_mask(unsigned char *p, size_t n, const uint8_t key[4], unsigned off)
{
	unsigned char k[8];
	uint64_t w, kw;
	size_t i = 0;

	for (unsigned j = 0; j < 8; j++)
		k[j] = key[(off + j) & 3];
	memcpy(&kw, k, 8);
	for (; i + 8 <= n; i += 8) {
		memcpy(&w, p + i, 8);
		w ^= kw;
		memcpy(p + i, &w, 8);
	}
	for (; i < n; i++)
		p[i] ^= k[i & 7];
}

bool
nw_ws_close_code_valid(unsigned code)
{
	if (code >= 3000 && code <= 4999)
		return true;
	switch (code) {
	case 1000:
	case 1001:
	case 1002:
	case 1003:
	case 1007:
	case 1008:
	case 1009:
	case 1010:
	case 1011:
	case 1012:
	case 1013:
	case 1014:
		return true;
	default:
		return false; /* 1004-1006 and 1015 are never sent */
	}
}

size_t
nw_ws_close_payload(unsigned char out[NW_WS_CONTROL_MAX], unsigned code,
    const char *reason, size_t reason_len)
{
	if (code == NW_WS_CLOSE_NO_STATUS)
		return 0;
	out[0] = (unsigned char)(code >> 8);
	out[1] = (unsigned char)code;
	if (reason_len > NW_WS_CONTROL_MAX - 2) {
		reason_len = NW_WS_CONTROL_MAX - 2;
		/* back off to the start of the character cut in two */
		while (reason_len > 0 &&
		    ((unsigned char)reason[reason_len] & 0xc0) == 0x80)
			reason_len--;
	}
	if (reason_len > 0)
		memcpy(out + 2, reason, reason_len);
	return 2 + reason_len;
}

size_t
nw_ws_header(unsigned char out[NW_WS_HEADER_MAX], unsigned opcode, bool fin,
    bool rsv1, uint64_t len, const uint8_t *mask)
{
	unsigned char m = mask != NULL ? 0x80 : 0;
	size_t n;

	out[0] = (unsigned char)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) |
	    (opcode & 0x0f));
	if (len < 126) {
		out[1] = m | (unsigned char)len;
		n = 2;
	} else if (len <= 0xffff) {
		out[1] = m | 126;
		out[2] = (unsigned char)(len >> 8);
		out[3] = (unsigned char)len;
		n = 4;
	} else {
		out[1] = m | 127;
		for (int i = 0; i < 8; i++)
			out[2 + i] = (unsigned char)(len >> (56 - 8 * i));
		n = 10;
	}
	if (mask != NULL) {
		memcpy(out + n, mask, 4);
		n += 4;
	}
	return n;
}

/* Room for at least want more bytes, never beyond max_size + 1. */
static int
msg_grow(struct nw_ws_parser *p, size_t want)
{
	size_t cap = p->msg_cap ? p->msg_cap : 4096;
	unsigned char *m;

	while (cap - p->msg_len < want)
		cap *= 2;
	if (p->max_size > 0 && cap > p->max_size + 1)
		cap = (size_t)p->max_size + 1;
	if (cap <= p->msg_cap)
		return 0;
	m = realloc(p->msg, cap);
	if (m == NULL)
		return -1;
	p->msg = m;
	p->msg_cap = cap;
	return 0;
}

/* Inflates compressed payload bytes onto the message. */
static enum nw_ws_result
inflate_onto(struct nw_ws_parser *p, const unsigned char *in, size_t n)
{
	for (;;) {
		size_t room, before = p->msg_len;
		int r;

		if (p->msg_cap - p->msg_len < 1024 &&
		    (p->max_size == 0 || p->msg_cap <= p->max_size) &&
		    msg_grow(p, p->msg_cap ? p->msg_cap : 4096) < 0)
			return fail(p, NW_WS_CLOSE_INTERNAL, "out of memory");
		room = p->msg_cap - p->msg_len;
		r = nw_ws_pmd_inflate(
		    p->pmd, &in, &n, p->msg + p->msg_len, &room);
		if (r == NW_PMD_FAIL)
			return fail(p, NW_WS_CLOSE_INVALID_DATA,
			    "invalid compressed data");
		if (r == NW_PMD_NOMEM)
			return fail(p, NW_WS_CLOSE_INTERNAL, "out of memory");
		p->msg_len += room;
		if (p->max_size > 0 && p->msg_len > p->max_size)
			return fail(p, NW_WS_CLOSE_TOO_BIG, "message too big");
		if (p->msg_opcode == NW_WS_OP_TEXT &&
		    nw_utf8_feed(&p->utf8, p->msg + before, room) < 0)
			return fail(p, NW_WS_CLOSE_INVALID_DATA,
			    "invalid UTF-8 in a text message");
		if (r == NW_PMD_END)
			return NW_WS_AGAIN; /* BFINAL: the rest is ignored */
		/* a full output buffer may hide more output */
		if (n == 0 && p->msg_len < p->msg_cap)
			return NW_WS_AGAIN;
	}
}

/* Validates a complete header and sets up the payload. */
static enum nw_ws_result
frame_begin(struct nw_ws_parser *p)
{
	const unsigned char *h = p->hdr;
	unsigned len7 = h[1] & 0x7f;
	uint64_t len;
	unsigned i = 2;

	if (len7 == 126) {
		len = (uint64_t)h[2] << 8 | h[3];
		i = 4;
	} else if (len7 == 127) {
		len = 0;
		for (int j = 0; j < 8; j++)
			len = len << 8 | h[2 + j];
		i = 10;
		if (len >> 63)
			return fail(p, NW_WS_CLOSE_PROTOCOL,
			    "frame length has its top bit set");
	} else {
		len = len7;
	}
	memcpy(p->mask, h + i, 4);
	p->mask_off = 0;
	p->left = len;

	if (p->opcode & 0x08) {
		p->ctl_len = 0;
	} else if (p->opcode != NW_WS_OP_CONT) {
		/* a new message */
		p->msg_opcode = p->opcode;
		p->msg_deflated = p->rsv1;
		p->msg_len = 0;
		memset(&p->utf8, 0, sizeof(p->utf8));
	}
	if (!(p->opcode & 0x08) && !p->msg_deflated && p->max_size > 0 &&
	    len > p->max_size - p->msg_len)
		return fail(p, NW_WS_CLOSE_TOO_BIG, "message too big");
	p->state = ST_PAYLOAD;
	return NW_WS_AGAIN;
}

/* The first two header bytes: everything that can be judged from them. */
static enum nw_ws_result
check_start(struct nw_ws_parser *p)
{
	unsigned char b0 = p->hdr[0], b1 = p->hdr[1];
	unsigned len7 = b1 & 0x7f;

	p->fin = b0 & 0x80;
	p->rsv1 = b0 & 0x40;
	p->opcode = b0 & 0x0f;
	if (b0 & 0x30)
		return fail(p, NW_WS_CLOSE_PROTOCOL, "reserved bits set");
	if (!(b1 & 0x80))
		return fail(p, NW_WS_CLOSE_PROTOCOL, "unmasked client frame");
	switch (p->opcode) {
	case NW_WS_OP_CLOSE:
	case NW_WS_OP_PING:
	case NW_WS_OP_PONG:
		if (!p->fin)
			return fail(p, NW_WS_CLOSE_PROTOCOL,
			    "fragmented control frame");
		if (len7 > NW_WS_CONTROL_MAX)
			return fail(
			    p, NW_WS_CLOSE_PROTOCOL, "control frame too long");
		if (p->rsv1)
			return fail(
			    p, NW_WS_CLOSE_PROTOCOL, "RSV1 on a control frame");
		break;
	case NW_WS_OP_CONT:
		if (p->msg_opcode == 0)
			return fail(p, NW_WS_CLOSE_PROTOCOL,
			    "continuation frame without a message");
		if (p->rsv1)
			return fail(p, NW_WS_CLOSE_PROTOCOL,
			    "RSV1 on a continuation frame");
		break;
	case NW_WS_OP_TEXT:
	case NW_WS_OP_BINARY:
		if (p->msg_opcode != 0)
			return fail(p, NW_WS_CLOSE_PROTOCOL,
			    "new message inside a fragmented one");
		if (p->rsv1 && (p->pmd == NULL || !p->pmd->on))
			return fail(p, NW_WS_CLOSE_PROTOCOL,
			    "RSV1 without permessage-deflate");
		break;
	default:
		return fail(p, NW_WS_CLOSE_PROTOCOL, "reserved opcode");
	}
	p->hdr_need = 2 + 4 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
	return NW_WS_AGAIN;
}

/* The frame's payload is complete: an event, or on to the next frame. */
static enum nw_ws_result
frame_end(struct nw_ws_parser *p, struct nw_ws_event *ev)
{
	static const unsigned char tail[4] = {0x00, 0x00, 0xff, 0xff};

	p->state = ST_HEADER;
	p->hdr_have = 0;
	p->hdr_need = 2;
	switch (p->opcode) {
	case NW_WS_OP_PING:
	case NW_WS_OP_PONG:
		ev->type =
		    p->opcode == NW_WS_OP_PING ? NW_WS_EV_PING : NW_WS_EV_PONG;
		ev->data = p->ctl;
		ev->len = p->ctl_len;
		return NW_WS_EVENT;
	case NW_WS_OP_CLOSE:
		ev->type = NW_WS_EV_CLOSE;
		ev->code = NW_WS_CLOSE_NO_STATUS;
		ev->data = p->ctl;
		ev->len = 0;
		if (p->ctl_len == 1)
			return fail(
			    p, NW_WS_CLOSE_PROTOCOL, "close frame of one byte");
		if (p->ctl_len >= 2) {
			ev->code = (uint16_t)(p->ctl[0] << 8 | p->ctl[1]);
			if (!nw_ws_close_code_valid(ev->code))
				return fail(p, NW_WS_CLOSE_PROTOCOL,
				    "invalid close code");
			ev->data = p->ctl + 2;
			ev->len = p->ctl_len - 2u;
			if (!nw_utf8_valid(ev->data, ev->len))
				return fail(p, NW_WS_CLOSE_INVALID_DATA,
				    "invalid UTF-8 in a close reason");
		}
		return NW_WS_EVENT;
	default:
		break;
	}
	if (!p->fin)
		return NW_WS_AGAIN;
	if (p->msg_deflated) {
		enum nw_ws_result r = inflate_onto(p, tail, sizeof(tail));

		if (r == NW_WS_ERROR)
			return r;
		nw_ws_pmd_inflate_done(p->pmd);
	}
	if (p->msg_opcode == NW_WS_OP_TEXT && !nw_utf8_complete(&p->utf8))
		return fail(p, NW_WS_CLOSE_INVALID_DATA,
		    "text message ends inside a character");
	ev->type =
	    p->msg_opcode == NW_WS_OP_TEXT ? NW_WS_EV_TEXT : NW_WS_EV_BINARY;
	ev->data = p->msg;
	ev->len = p->msg_len;
	p->msg_opcode = 0;
	return NW_WS_EVENT;
}

/* A whole unfragmented, uncompressed message already in the input. */
static enum nw_ws_result
message_in_place(
    struct nw_ws_parser *p, unsigned char *data, struct nw_ws_event *ev)
{
	size_t n = (size_t)p->left;

	nw_ws_mask(data, n, p->mask, 0);
	if (p->opcode == NW_WS_OP_TEXT && !nw_utf8_valid(data, n))
		return fail(p, NW_WS_CLOSE_INVALID_DATA,
		    "invalid UTF-8 in a text message");
	ev->type = p->opcode == NW_WS_OP_TEXT ? NW_WS_EV_TEXT : NW_WS_EV_BINARY;
	ev->data = data;
	ev->len = n;
	p->msg_opcode = 0;
	p->left = 0;
	p->state = ST_HEADER;
	p->hdr_have = 0;
	p->hdr_need = 2;
	return NW_WS_EVENT;
}

/* Unmasked payload bytes of the current frame, where they belong. */
static enum nw_ws_result
payload(struct nw_ws_parser *p, unsigned char *data, size_t n)
{
	if (p->opcode & 0x08) {
		memcpy(p->ctl + p->ctl_len, data, n);
		p->ctl_len += (uint8_t)n;
		return NW_WS_AGAIN;
	}
	if (p->msg_deflated)
		return inflate_onto(p, data, n);
	if (n == 0)
		return NW_WS_AGAIN;
	if (p->msg_cap - p->msg_len < n && msg_grow(p, n) < 0)
		return fail(p, NW_WS_CLOSE_INTERNAL, "out of memory");
	memcpy(p->msg + p->msg_len, data, n);
	if (p->msg_opcode == NW_WS_OP_TEXT &&
	    nw_utf8_feed(&p->utf8, p->msg + p->msg_len, n) < 0)
		return fail(p, NW_WS_CLOSE_INVALID_DATA,
		    "invalid UTF-8 in a text message");
	p->msg_len += n;
	return NW_WS_AGAIN;
}

enum nw_ws_result
nw_ws_parse(struct nw_ws_parser *p, unsigned char *in, size_t len, size_t *used,
    struct nw_ws_event *ev)
{
	enum nw_ws_result r;
	size_t i = 0;

	*used = 0;
	if (p->state == ST_FAILED)
		return NW_WS_ERROR;
	/* the last message was handed back: a big buffer goes */
	if (p->msg_opcode == 0 && p->msg_cap > MSG_KEEP) {
		free(p->msg);
		p->msg = NULL;
		p->msg_cap = 0;
		p->msg_len = 0;
	}
	if (p->hdr_need == 0)
		p->hdr_need = 2;
	for (;;) {
		if (p->state == ST_HEADER) {
			size_t take = p->hdr_need - p->hdr_have;

			if (take > len - i)
				take = len - i;
			memcpy(p->hdr + p->hdr_have, in + i, take);
			p->hdr_have += (uint8_t)take;
			i += take;
			*used = i;
			if (p->hdr_have < p->hdr_need)
				return NW_WS_AGAIN;
			if (p->hdr_have == 2) {
				if (check_start(p) == NW_WS_ERROR)
					return NW_WS_ERROR;
				continue;
			}
			if (frame_begin(p) == NW_WS_ERROR)
				return NW_WS_ERROR;
			if (p->fin && p->opcode != NW_WS_OP_CONT &&
			    !(p->opcode & 0x08) && !p->msg_deflated &&
			    p->left <= len - i) {
				size_t n = (size_t)p->left;

				r = message_in_place(p, in + i, ev);
				*used = i + n;
				return r;
			}
		}
		if (p->left > 0) {
			size_t n =
			    p->left < len - i ? (size_t)p->left : len - i;

			nw_ws_mask(in + i, n, p->mask, p->mask_off);
			p->mask_off = (uint8_t)((p->mask_off + n) & 3);
			r = payload(p, in + i, n);
			i += n;
			*used = i;
			p->left -= n;
			if (r == NW_WS_ERROR)
				return r;
			if (p->left > 0)
				return NW_WS_AGAIN;
		}
		r = frame_end(p, ev);
		if (r != NW_WS_AGAIN)
			return r;
		if (i == len)
			return NW_WS_AGAIN;
	}
}

void
nw_ws_parser_free(struct nw_ws_parser *p)
{
	free(p->msg);
	p->msg = NULL;
	p->msg_cap = 0;
	p->msg_len = 0;
}
