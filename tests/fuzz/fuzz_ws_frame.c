/*
 * fuzz_ws_frame.c: libFuzzer harness for the WebSocket frame decoder and the
 * permessage-deflate offer parser (worker-shim/src/core/ws*.c).
 *
 * The first input byte picks the options: bit 0 negotiates deflate, bits 1-3
 * the size of the pieces the rest is fed in (a read may end anywhere), bit 4
 * a small max_size; the rest is what a client sent. Besides "no crash, no
 * leak", every message handed back must be what the protocol allows (UTF-8
 * text, short control frames, legal close codes), and must decode the same
 * after the encoder frames it again. The same bytes are also parsed as a
 * Sec-WebSocket-Extensions value.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined \
 *       -Iworker-shim/src/core tests/fuzz/fuzz_ws_frame.c \
 *       worker-shim/src/core/ws_*.c -lcrypto -lz -o fuzz_ws_frame
 *   ./fuzz_ws_frame tests/fuzz/corpus/ws_frame
 */
#include <stdlib.h>
#include <string.h>

#include "ws.h"

static const uint8_t KEY[4] = {0xa5, 0x5a, 0x0f, 0xf0};

/* Frames msg again as a client would and checks it decodes the same. */
static void
reframe(const struct nw_ws_event *ev)
{
	struct nw_ws_parser p = {0};
	struct nw_ws_event back;
	unsigned char *f = malloc(ev->len + NW_WS_HEADER_MAX);
	size_t h, used;
	unsigned op =
	    ev->type == NW_WS_EV_TEXT ? NW_WS_OP_TEXT : NW_WS_OP_BINARY;

	if (f == NULL)
		return;
	h = nw_ws_header(f, op, true, false, ev->len, KEY);
	if (ev->len > 0)
		memcpy(f + h, ev->data, ev->len);
	nw_ws_mask(f + h, ev->len, KEY, 0);
	if (nw_ws_parse(&p, f, h + ev->len, &used, &back) != NW_WS_EVENT ||
	    used != h + ev->len || back.len != ev->len ||
	    (ev->len > 0 && memcmp(back.data, ev->data, ev->len) != 0))
		abort();
	nw_ws_parser_free(&p);
	free(f);
}

static void
check_event(const struct nw_ws_event *ev)
{
	switch (ev->type) {
	case NW_WS_EV_TEXT:
		if (!nw_utf8_valid(ev->data, ev->len))
			abort();
		/* fall through */
	case NW_WS_EV_BINARY:
		reframe(ev);
		break;
	case NW_WS_EV_PING:
	case NW_WS_EV_PONG:
		if (ev->len > NW_WS_CONTROL_MAX)
			abort();
		break;
	case NW_WS_EV_CLOSE:
		if (ev->code != NW_WS_CLOSE_NO_STATUS &&
		    !nw_ws_close_code_valid(ev->code))
			abort();
		if (ev->len > NW_WS_CONTROL_MAX - 2 ||
		    !nw_utf8_valid(ev->data, ev->len))
			abort();
		break;
	default:
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t pieces[8] = {0, 1, 2, 3, 5, 8, 13, 4096};
	struct nw_ws_pmd_config cfg = NW_WS_PMD_CONFIG_DEFAULT;
	struct nw_ws_pmd pmd = {0};
	struct nw_ws_parser p = {0};
	unsigned char *buf;
	size_t off = 0, step;
	char resp[256];

	if (size < 1)
		return 0;
	nw_ws_pmd_negotiate(
	    &cfg, (const char *)data + 1, size - 1, &pmd, resp, sizeof(resp));
	memset(&pmd, 0, sizeof(pmd));
	pmd.on = data[0] & 1;
	pmd.server_bits = 12;
	pmd.client_bits = 9 + (data[0] >> 5);
	pmd.mem_level = 5;
	step = pieces[(data[0] >> 1) & 7];
	p.max_size = data[0] & 0x10 ? 1024 : 1 << 20;
	p.pmd = &pmd;

	buf = malloc(size);
	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	off = 1;
	while (off < size) {
		size_t n = step && step < size - off ? step : size - off, used;
		struct nw_ws_event ev;
		enum nw_ws_result r;

		r = nw_ws_parse(&p, buf + off, n, &used, &ev);
		if (used > n)
			abort();
		off += used;
		if (r == NW_WS_ERROR) {
			if (p.close_code != NW_WS_CLOSE_PROTOCOL &&
			    p.close_code != NW_WS_CLOSE_INVALID_DATA &&
			    p.close_code != NW_WS_CLOSE_TOO_BIG &&
			    p.close_code != NW_WS_CLOSE_INTERNAL)
				abort();
			break;
		}
		if (r == NW_WS_AGAIN) {
			if (used != n)
				abort();
			continue;
		}
		check_event(&ev);
		if (ev.type != NW_WS_EV_CLOSE && ev.len > p.max_size)
			abort();
	}
	nw_ws_parser_free(&p);
	nw_ws_pmd_free(&pmd);
	free(buf);
	return 0;
}
