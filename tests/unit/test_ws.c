/*
 * test_ws.c: the WebSocket core (worker-shim/src/core/ws*.c) against the
 * RFCs' own examples (RFC 6455 1.3 and 5.7, RFC 7692 7.2.3) and every way a
 * client can break the protocol.
 *
 * Each input is also fed in pieces of 1, 2, 3, 7 and all bytes, because a
 * read may end anywhere; the events are written as one string
 * ("T:Hello|C:1000:bye|E:1002") so that a check is one line.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "ws.h"

static const uint8_t KEY[4] = {0x37, 0xfa, 0x21, 0x3d}; /* RFC 6455 5.7 */

/* A masked client frame. */
static size_t
cframe(unsigned char *out, unsigned op, bool fin, bool rsv1, const void *data,
    size_t n)
{
	size_t h = nw_ws_header(out, op, fin, rsv1, n, KEY);

	memcpy(out + h, data, n);
	nw_ws_mask(out + h, n, KEY, 0);
	return h + n;
}

/* Describes what a parser makes of in, fed step bytes at a time. */
static void
run(struct nw_ws_parser *p, const unsigned char *in, size_t len, size_t step,
    char *out, size_t outsize)
{
	unsigned char *copy = malloc(len + 1);
	size_t off = 0, o = 0;

	memcpy(copy, in, len);
	out[0] = '\0';
	while (off < len || len == 0) {
		size_t n = step && step < len - off ? step : len - off, used;
		struct nw_ws_event ev;
		enum nw_ws_result r;

		r = nw_ws_parse(p, copy + off, n, &used, &ev);
		off += used;
		if (r == NW_WS_ERROR) {
			o += snprintf(
			    out + o, outsize - o, "E:%u|", p->close_code);
			break;
		}
		if (r == NW_WS_AGAIN) {
			if (used != n)
				o += snprintf(out + o, outsize - o, "SHORT|");
			if (off >= len)
				break;
			continue;
		}
		switch (ev.type) {
		case NW_WS_EV_TEXT:
			o += snprintf(out + o, outsize - o, "T:");
			break;
		case NW_WS_EV_BINARY:
			o += snprintf(out + o, outsize - o, "B:");
			break;
		case NW_WS_EV_PING:
			o += snprintf(out + o, outsize - o, "P:");
			break;
		case NW_WS_EV_PONG:
			o += snprintf(out + o, outsize - o, "O:");
			break;
		case NW_WS_EV_CLOSE:
			o += snprintf(out + o, outsize - o, "C:%u:", ev.code);
			break;
		}
		if (ev.len <= 64)
			o += snprintf(out + o, outsize - o, "%.*s|",
			    (int)ev.len, (const char *)ev.data);
		else
			o += snprintf(out + o, outsize - o, "<%zu>|", ev.len);
		if (o >= outsize)
			o = outsize - 1;
	}
	free(copy);
}

/* The same verdict whatever the piece size. */
static void
check_pmd(const unsigned char *in, size_t len, struct nw_ws_pmd *pmd,
    uint64_t max, const char *want, const char *name)
{
	static const size_t steps[] = {0, 1, 2, 3, 7};
	char got[4096];

	for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
		struct nw_ws_parser p = {.max_size = max, .pmd = pmd};
		struct nw_ws_pmd fresh;

		if (pmd != NULL) {
			fresh = *pmd;
			fresh.inflater = fresh.deflater = NULL;
			p.pmd = &fresh;
		}
		run(&p, in, len, steps[s], got, sizeof(got));
		if (!is_str(got, want, "%s (pieces of %zu)", name, steps[s]))
			break;
		nw_ws_parser_free(&p);
		if (pmd != NULL)
			nw_ws_pmd_free(&fresh);
	}
}

static void
check(const unsigned char *in, size_t len, const char *want, const char *name)
{
	check_pmd(in, len, NULL, NW_WS_MAX_SIZE_DEFAULT, want, name);
}

static void
test_handshake(void)
{
	char acc[NW_WS_ACCEPT_LEN + 1];
	const char *k = "dGhlIHNhbXBsZSBub25jZQ==";

	ok(nw_ws_key_valid(k, strlen(k)), "RFC 6455 1.3 key is valid");
	is_int(nw_ws_accept_key(k, strlen(k), acc), 0, "accept key computed");
	is_str(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "RFC 6455 1.3 accept");
	ok(!nw_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ=", 23), "short key");
	ok(!nw_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ=a", 24), "no padding");
	ok(!nw_ws_key_valid("dGhlIHNhbXBsZSBub2!jZQ==", 24), "bad char");
	ok(!nw_ws_key_valid("", 0), "empty key");
	ok(nw_ws_list_has("keep-alive, Upgrade", 19, "upgrade"),
	    "Connection list has upgrade");
	ok(nw_ws_list_has(" websocket ", 11, "websocket"), "OWS around");
	ok(!nw_ws_list_has("upgrades", 8, "upgrade"), "no prefix match");
	ok(!nw_ws_list_has("keep-alive", 10, "upgrade"), "absent");
}

static void
test_utf8(void)
{
	struct nw_utf8 u = {0};
	const unsigned char kosme[] =
	    "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";

	ok(nw_utf8_valid(kosme, sizeof(kosme) - 1), "kosme is valid");
	ok(nw_utf8_valid((const unsigned char *)"plain ascii text, long", 22),
	    "ascii");
	ok(nw_utf8_valid((const unsigned char *)"\xf4\x8f\xbf\xbf", 4),
	    "U+10FFFF");
	ok(!nw_utf8_valid((const unsigned char *)"\xc0\x80", 2), "overlong");
	ok(!nw_utf8_valid((const unsigned char *)"\xe0\x9f\xbf", 3),
	    "overlong 3-byte");
	ok(!nw_utf8_valid((const unsigned char *)"\xed\xa0\x80", 3),
	    "surrogate");
	ok(!nw_utf8_valid((const unsigned char *)"\xf4\x90\x80\x80", 4),
	    "above U+10FFFF");
	ok(!nw_utf8_valid((const unsigned char *)"\xf8\x88\x80\x80\x80", 5),
	    "5-byte form");
	ok(!nw_utf8_valid((const unsigned char *)"\xe2\x82", 2),
	    "truncated is not complete");
	ok(!nw_utf8_valid((const unsigned char *)"abcdefgh\x80", 9),
	    "stray continuation after 8 ascii");
	for (size_t i = 0; i < sizeof(kosme) - 1; i++)
		if (nw_utf8_feed(&u, kosme + i, 1) < 0)
			break;
	ok(nw_utf8_complete(&u), "kosme byte by byte");
}

static void
test_encoder(void)
{
	unsigned char h[NW_WS_HEADER_MAX], f[64];
	size_t n;

	n = nw_ws_header(h, NW_WS_OP_TEXT, true, false, 5, NULL);
	ok(n == 2 && h[0] == 0x81 && h[1] == 0x05, "unmasked Hello header");
	n = cframe(f, NW_WS_OP_TEXT, true, false, "Hello", 5);
	ok(n == 11 &&
	        memcmp(f, "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11) ==
	            0,
	    "RFC 6455 5.7 masked Hello");
	n = nw_ws_header(h, NW_WS_OP_TEXT, false, false, 3, NULL);
	ok(n == 2 && h[0] == 0x01 && h[1] == 0x03, "first fragment header");
	n = nw_ws_header(h, NW_WS_OP_CONT, true, false, 2, NULL);
	ok(n == 2 && h[0] == 0x80 && h[1] == 0x02, "last fragment header");
	n = nw_ws_header(h, NW_WS_OP_PING, true, false, 5, NULL);
	ok(n == 2 && h[0] == 0x89 && h[1] == 0x05, "ping header");
	n = nw_ws_header(h, NW_WS_OP_BINARY, true, false, 256, NULL);
	ok(n == 4 && memcmp(h, "\x82\x7e\x01\x00", 4) == 0, "256 bytes");
	n = nw_ws_header(h, NW_WS_OP_BINARY, true, false, 65536, NULL);
	ok(n == 10 &&
	        memcmp(h, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10) == 0,
	    "64 KiB");
	n = nw_ws_header(h, NW_WS_OP_TEXT, true, true, 7, NULL);
	ok(n == 2 && h[0] == 0xc1, "RSV1 set for a compressed message");
}

static void
test_close_payload(void)
{
	unsigned char out[NW_WS_CONTROL_MAX];
	char reason[200];
	size_t n;

	is_int(nw_ws_close_payload(out, 1005, "x", 1), 0, "1005: no payload");
	n = nw_ws_close_payload(out, 1001, "bye", 3);
	ok(n == 5 &&
	        memcmp(out,
	            "\x03\xe9"
	            "bye",
	            5) == 0,
	    "1001 bye");
	/* 'a' then 66 two-byte characters: the cut falls inside one */
	reason[0] = 'a';
	for (int i = 0; i < 66; i++)
		memcpy(reason + 1 + 2 * i, "\xc3\xa9", 2);
	n = nw_ws_close_payload(out, 1000, reason, 133);
	is_int(n, 2 + 123, "reason cut to 123 bytes");
	ok(nw_utf8_valid(out + 2, n - 2), "cut at a character boundary");
	reason[0] = 'a';
	reason[1] = 'b';
	for (int i = 0; i < 66; i++)
		memcpy(reason + 2 + 2 * i, "\xc3\xa9", 2);
	n = nw_ws_close_payload(out, 1000, reason, 134);
	is_int(n, 2 + 122, "cut backs off a split character");
	ok(nw_ws_close_code_valid(1000) && nw_ws_close_code_valid(1012) &&
	        nw_ws_close_code_valid(3000) && nw_ws_close_code_valid(4999),
	    "valid close codes");
	ok(!nw_ws_close_code_valid(999) && !nw_ws_close_code_valid(1004) &&
	        !nw_ws_close_code_valid(1005) &&
	        !nw_ws_close_code_valid(1006) &&
	        !nw_ws_close_code_valid(1015) &&
	        !nw_ws_close_code_valid(2999) && !nw_ws_close_code_valid(5000),
	    "invalid close codes");
}

static void
test_decoder(void)
{
	unsigned char b[1024], big[126];
	size_t n;

	n = cframe(b, NW_WS_OP_TEXT, true, false, "Hello", 5);
	check(b, n, "T:Hello|", "masked Hello");
	n = cframe(b, NW_WS_OP_BINARY, true, false, "", 0);
	check(b, n, "B:|", "empty binary");
	/* fragmented, a ping in between, then a pong and a close */
	n = cframe(b, NW_WS_OP_TEXT, false, false, "Hel", 3);
	n += cframe(b + n, NW_WS_OP_PING, true, false, "hi", 2);
	n += cframe(b + n, NW_WS_OP_CONT, false, false, "", 0);
	n += cframe(b + n, NW_WS_OP_CONT, true, false, "lo", 2);
	n += cframe(b + n, NW_WS_OP_PONG, true, false, "Hello", 5);
	n += cframe(b + n, NW_WS_OP_CLOSE, true, false,
	    "\x03\xe8"
	    "bye",
	    5);
	check(b, n, "P:hi|T:Hello|O:Hello|C:1000:bye|",
	    "fragments, ping between, pong, close");
	n = cframe(b, NW_WS_OP_CLOSE, true, false, "", 0);
	check(b, n, "C:1005:|", "empty close is 1005");
	n = cframe(b, NW_WS_OP_CLOSE, true, false, "\x03", 1);
	check(b, n, "E:1002|", "one-byte close");
	n = cframe(b, NW_WS_OP_CLOSE, true, false, "\x03\xed", 2);
	check(b, n, "E:1002|", "close 1005 on the wire");
	n = cframe(b, NW_WS_OP_CLOSE, true, false, "\x03\xe7", 2);
	check(b, n, "E:1002|", "close 999");
	n = cframe(b, NW_WS_OP_CLOSE, true, false, "\x0b\xb8", 2);
	check(b, n, "C:3000:|", "close 3000");
	n = cframe(b, NW_WS_OP_CLOSE, true, false, "\x13\x88", 2);
	check(b, n, "E:1002|", "close 5000");
	n = cframe(b, NW_WS_OP_CLOSE, true, false, "\x03\xe8\xff", 3);
	check(b, n, "E:1007|", "close reason not UTF-8");

	/* framing violations */
	memcpy(b, "\x81\x05Hello", 7);
	check(b, 7, "E:1002|", "unmasked client frame");
	n = cframe(b, NW_WS_OP_TEXT, true, false, "x", 1);
	b[0] |= 0x20;
	check(b, n, "E:1002|", "RSV2");
	n = cframe(b, NW_WS_OP_TEXT, true, false, "x", 1);
	b[0] |= 0x10;
	check(b, n, "E:1002|", "RSV3");
	n = cframe(b, NW_WS_OP_TEXT, true, true, "x", 1);
	check(b, n, "E:1002|", "RSV1 without the extension");
	n = cframe(b, 3, true, false, "x", 1);
	check(b, n, "E:1002|", "opcode 3");
	n = cframe(b, 0xb, true, false, "x", 1);
	check(b, n, "E:1002|", "opcode 0xb");
	n = cframe(b, NW_WS_OP_PING, false, false, "x", 1);
	check(b, n, "E:1002|", "fragmented ping");
	memset(big, 'a', sizeof(big));
	n = cframe(b, NW_WS_OP_PING, true, false, big, 126);
	check(b, n, "E:1002|", "126-byte ping");
	n = cframe(b, NW_WS_OP_CONT, true, false, "x", 1);
	check(b, n, "E:1002|", "continuation first");
	n = cframe(b, NW_WS_OP_TEXT, false, false, "x", 1);
	n += cframe(b + n, NW_WS_OP_TEXT, true, false, "y", 1);
	check(b, n, "E:1002|", "text inside a fragmented message");
	memcpy(
	    b, "\x82\xff\x80\x00\x00\x00\x00\x00\x00\x01\x37\xfa\x21\x3d", 14);
	check(b, 14, "E:1002|", "64-bit length with the top bit");
	n = cframe(b, NW_WS_OP_TEXT, true, false, "Hello", 5);
	n += cframe(b + n, 3, true, false, "", 0);
	n += cframe(b + n, NW_WS_OP_TEXT, true, false, "again", 5);
	check(b, n, "T:Hello|E:1002|", "stops at the violation");

	/* UTF-8 */
	n = cframe(b, NW_WS_OP_TEXT, true, false, "ab\xff", 3);
	check(b, n, "E:1007|", "invalid UTF-8 text");
	n = cframe(b, NW_WS_OP_TEXT, false, false, "\xce", 1);
	n += cframe(b + n, NW_WS_OP_CONT, true, false, "\xba", 1);
	check(b, n, "T:\xce\xba|", "a character across fragments");
	n = cframe(b, NW_WS_OP_TEXT, false, false, "a\xed", 2);
	n += cframe(b + n, NW_WS_OP_CONT, true, false, "\xa0\x80", 2);
	check(b, n, "E:1007|", "a surrogate across fragments");
	n = cframe(b, NW_WS_OP_TEXT, true, false, "a\xe2\x82", 3);
	check(b, n, "E:1007|", "text ends inside a character");
	n = cframe(b, NW_WS_OP_BINARY, true, false, "\xff\xfe", 2);
	check(b, n, "B:\xff\xfe|", "binary is not UTF-8 checked");
}

static void
test_sizes(void)
{
	size_t big = 70000, n;
	unsigned char *b = malloc(big + 64), *payload = malloc(big);
	char got[256];

	memset(payload, 'z', big);
	n = cframe(b, NW_WS_OP_BINARY, true, false, payload, 200);
	check(b, n, "B:<200>|", "16-bit length");
	n = cframe(b, NW_WS_OP_TEXT, true, false, payload, big);
	check(b, n, "T:<70000>|", "64-bit length");
	check_pmd(b, n, NULL, big, "T:<70000>|", "exactly max_size");
	check_pmd(b, n, NULL, big - 1, "E:1009|", "one byte over max_size");
	n = cframe(b, NW_WS_OP_TEXT, false, false, payload, 40000);
	n += cframe(b + n, NW_WS_OP_CONT, true, false, payload, 30000);
	check_pmd(b, n, NULL, 69999, "E:1009|", "fragments add up over max");
	check_pmd(b, n, NULL, 70000, "T:<70000>|", "fragments add up to max");
	/* the 1009 comes from the header, before any payload arrives */
	{
		struct nw_ws_parser p = {.max_size = 100};
		struct nw_ws_event ev;
		size_t used;

		n = nw_ws_header(
		    b, NW_WS_OP_BINARY, true, false, 1u << 30, KEY);
		is_int(nw_ws_parse(&p, b, n, &used, &ev), NW_WS_ERROR,
		    "a 1 GiB header is refused at once");
		is_int(p.close_code, 1009, "with 1009");
		is_int(nw_ws_parse(&p, b, n, &used, &ev), NW_WS_ERROR,
		    "and stays failed");
	}
	/* a big message's buffer is freed on the next call */
	{
		struct nw_ws_parser p = {0};

		n = cframe(b, NW_WS_OP_BINARY, false, false, payload, big);
		n += cframe(b + n, NW_WS_OP_CONT, true, false, "", 0);
		run(&p, b, n, 4096, got, sizeof(got));
		is_str(got, "B:<70000>|", "fragmented big message");
		ok(p.msg_cap >= big, "buffer held while the message is out");
		n = cframe(b, NW_WS_OP_TEXT, true, false, "x", 1);
		run(&p, b, n, 0, got, sizeof(got));
		ok(p.msg_cap == 0, "and freed afterwards");
		nw_ws_parser_free(&p);
	}
	free(b);
	free(payload);
}

static void
test_negotiation(void)
{
	struct nw_ws_pmd_config cfg = NW_WS_PMD_CONFIG_DEFAULT;
	struct nw_ws_pmd pmd;
	char resp[256];
#define NEG(s) nw_ws_pmd_negotiate(&cfg, s, strlen(s), &pmd, resp, sizeof(resp))

	is_int(NEG("permessage-deflate"), 1, "plain offer accepted");
	is_str(resp, "permessage-deflate", "plain response");
	ok(pmd.server_bits == 12 && pmd.client_bits == 15,
	    "our window 12, the client's 15");
	is_int(NEG("permessage-deflate; client_max_window_bits"), 1,
	    "client_max_window_bits without a value");
	is_str(resp, "permessage-deflate; client_max_window_bits=12",
	    "client window limited to 12");
	is_int(pmd.client_bits, 12, "inflater window 12");
	is_int(NEG("permessage-deflate; server_max_window_bits=10; "
	           "client_max_window_bits=9"),
	    1, "both windows offered");
	is_str(resp,
	    "permessage-deflate; server_max_window_bits=10; "
	    "client_max_window_bits=9",
	    "windows honoured");
	is_int(NEG("permessage-deflate; server_max_window_bits=15"), 1,
	    "server window 15 offered");
	is_str(resp, "permessage-deflate; server_max_window_bits=12",
	    "answered with our smaller window");
	is_int(NEG("permessage-deflate; server_no_context_takeover; "
	           "client_no_context_takeover"),
	    1, "no context takeover");
	is_str(resp,
	    "permessage-deflate; server_no_context_takeover; "
	    "client_no_context_takeover",
	    "both echoed");
	ok(pmd.server_no_context_takeover && pmd.client_no_context_takeover,
	    "both set");
	is_int(NEG("x-webkit-deflate-frame, permessage-deflate; "
	           "server_max_window_bits=16, PerMessage-Deflate; "
	           "server_max_window_bits=\"11\""),
	    1, "first acceptable offer");
	is_str(resp, "permessage-deflate; server_max_window_bits=11",
	    "the quoted value of the third offer");
	is_int(NEG("permessage-deflate; foo"), 0, "unknown parameter");
	is_int(NEG("permessage-deflate; server_max_window_bits=8"), 0,
	    "window 8 (zlib cannot)");
	is_int(NEG("permessage-deflate; server_max_window_bits"), 0,
	    "server_max_window_bits needs a value");
	is_int(NEG("permessage-deflate; server_max_window_bits=010"), 0,
	    "leading zero");
	is_int(NEG("permessage-deflate; client_no_context_takeover; "
	           "client_no_context_takeover"),
	    0, "duplicate parameter");
	is_int(NEG("permessage-deflate; server_no_context_takeover=1"), 0,
	    "value on a flag");
	is_int(NEG("permessage-deflate; client_max_window_bits=\"1"), 0,
	    "unterminated quote");
	is_int(NEG(""), 0, "empty header");
	is_int(NEG(" , ;;=, \"\""), 0, "garbage");
	cfg.enabled = false;
	is_int(NEG("permessage-deflate"), 0, "disabled by config");
#undef NEG
}

/* RFC 7692 7.2.3, sent by a client (so masked). */
static void
test_rfc7692(void)
{
	struct nw_ws_pmd pmd = {
	    .on = true, .server_bits = 15, .client_bits = 15, .mem_level = 8};
	unsigned char b[256];
	unsigned char *out = NULL;
	size_t n, cap = 0;
	long clen;

	n = cframe(
	    b, NW_WS_OP_TEXT, true, true, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7);
	check_pmd(b, n, &pmd, 0, "T:Hello|", "7.2.3.1 compressed Hello");
	n +=
	    cframe(b + n, NW_WS_OP_TEXT, true, true, "\xf2\x00\x11\x00\x00", 5);
	check_pmd(
	    b, n, &pmd, 0, "T:Hello|T:Hello|", "7.2.3.2 sharing the window");
	n = cframe(b, NW_WS_OP_TEXT, true, true,
	    "\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00", 11);
	check_pmd(b, n, &pmd, 0, "T:Hello|", "7.2.3.3 stored block");
	n = cframe(b, NW_WS_OP_TEXT, true, true,
	    "\xf3\x48\xcd\xc9\xc9\x07\x00\x00", 8);
	n += cframe(b + n, NW_WS_OP_TEXT, true, true,
	    "\xf2\x48\xcd\xc9\xc9\x07\x00", 7);
	check_pmd(b, n, &pmd, 0, "T:Hello|T:Hello|",
	    "7.2.3.4 BFINAL, then a fresh stream");
	n = cframe(b, NW_WS_OP_TEXT, true, true,
	    "\xf2\x48\x05\x00\x00\x00\xff\xff\xca\xc9\xc9\x07\x00", 13);
	check_pmd(b, n, &pmd, 0, "T:Hello|", "7.2.3.5 two blocks");
	n = cframe(b, NW_WS_OP_TEXT, false, true, "\xf2\x48\xcd", 3);
	n += cframe(b + n, NW_WS_OP_PING, true, false, "", 0);
	n += cframe(b + n, NW_WS_OP_CONT, true, false, "\xc9\xc9\x07\x00", 4);
	check_pmd(
	    b, n, &pmd, 0, "P:|T:Hello|", "7.2.3.6 fragmented, a ping between");
	n = cframe(b, NW_WS_OP_TEXT, false, true, "\xf2\x48\xcd", 3);
	n += cframe(b + n, NW_WS_OP_CONT, true, true, "\xc9\xc9\x07\x00", 4);
	check_pmd(b, n, &pmd, 0, "E:1002|", "RSV1 on a continuation");
	n = cframe(b, NW_WS_OP_TEXT, true, true, "\xff\xff\xff\xff", 4);
	check_pmd(b, n, &pmd, 0, "E:1007|", "not DEFLATE data");
	n = cframe(b, NW_WS_OP_PING, true, true, "", 0);
	check_pmd(b, n, &pmd, 0, "E:1002|", "RSV1 on a ping");

	/* our compressor */
	clen = nw_ws_pmd_deflate(&pmd, "Hello", 5, &out, &cap);
	ok(clen == 7 && memcmp(out, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7) == 0,
	    "deflate Hello as 7.2.3.1");
	clen = nw_ws_pmd_deflate(&pmd, "Hello", 5, &out, &cap);
	ok(clen == 5 && memcmp(out, "\xf2\x00\x11\x00\x00", 5) == 0,
	    "again, with the shared window as 7.2.3.2");
	clen = nw_ws_pmd_deflate(&pmd, "", 0, &out, &cap);
	ok(clen == 1 && out[0] == 0x00, "empty message as 7.2.3.6's 0x00");
	nw_ws_pmd_free(&pmd);
	pmd.server_no_context_takeover = true;
	nw_ws_pmd_deflate(&pmd, "Hello", 5, &out, &cap);
	clen = nw_ws_pmd_deflate(&pmd, "Hello", 5, &out, &cap);
	ok(clen == 7 && memcmp(out, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7) == 0,
	    "no context takeover: the second Hello as the first");
	nw_ws_pmd_free(&pmd);
	free(out);
}

/* Round trips through both halves, and the inflate bound. */
static void
test_deflate_roundtrip(void)
{
	struct nw_ws_pmd tx = {
	    .on = true, .server_bits = 15, .client_bits = 15, .mem_level = 5};
	struct nw_ws_pmd rx = tx;
	size_t big = 1 << 20, n;
	unsigned char *text = malloc(big), *frame = malloc(big + 64);
	unsigned char *out = NULL;
	size_t cap = 0;
	char got[256];
	long clen;

	for (size_t i = 0; i < big; i++)
		text[i] =
		    "abcdefghij klmnopqrstuvwxyz\n"[(i * 7 + i / 13) % 28];
	for (int round = 0; round < 3; round++) {
		struct nw_ws_parser p = {.pmd = &rx, .max_size = big};

		clen = nw_ws_pmd_deflate(&tx, text, big, &out, &cap);
		ok(clen > 0 && (size_t)clen < big / 4,
		    "1 MiB of text compresses (round %d)", round);
		n = cframe(frame, NW_WS_OP_TEXT, true, true, out, (size_t)clen);
		run(&p, frame, n, 1000, got, sizeof(got));
		is_str(
		    got, "T:<1048576>|", "and inflates back (round %d)", round);
		ok(p.msg_len == big && memcmp(p.msg, text, big) == 0,
		    "byte for byte (round %d)", round);
		nw_ws_parser_free(&p);
	}
	/* a bomb: 1 MiB of zeros is about 1 KiB compressed */
	{
		struct nw_ws_pmd zt = tx, zr = rx;
		struct nw_ws_parser p = {.pmd = &zr, .max_size = 65536};

		zt.deflater = zr.inflater = NULL;
		memset(text, 0, big);
		clen = nw_ws_pmd_deflate(&zt, text, big, &out, &cap);
		ok(clen > 0 && clen < 2048, "1 MiB of zeros is %ld bytes",
		    clen);
		n = cframe(
		    frame, NW_WS_OP_BINARY, true, true, out, (size_t)clen);
		run(&p, frame, n, 0, got, sizeof(got));
		is_str(got, "E:1009|", "inflating past max_size is 1009");
		ok(p.msg_cap <= 65537, "without allocating beyond the limit");
		nw_ws_parser_free(&p);
		nw_ws_pmd_free(&zt);
		nw_ws_pmd_free(&zr);
	}
	nw_ws_pmd_free(&tx);
	nw_ws_pmd_free(&rx);
	free(out);
	free(text);
	free(frame);
}

int
main(void)
{
	test_handshake();
	test_utf8();
	test_encoder();
	test_close_payload();
	test_decoder();
	test_sizes();
	test_negotiation();
	test_rfc7692();
	test_deflate_roundtrip();
	return done_testing();
}
