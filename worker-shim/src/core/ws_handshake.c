/*
 * ws_handshake.c: the server's half of the opening handshake's arithmetic.
 *
 * Checks a Sec-WebSocket-Key, computes its Sec-WebSocket-Accept with
 * libcrypto's SHA-1 and base64 (never hand-written crypto), and finds a
 * token in a comma-separated header value. Which headers a request must
 * carry, and what to answer when it does not, is the driver's decision.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "ws.h"

#define GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

bool
nw_ws_key_valid(const char *key, size_t len)
{
	unsigned char raw[24];

	/* 16 bytes are 22 base64 characters and "==". */
	if (len != 24 || key[22] != '=' || key[23] != '=')
		return false;
	for (size_t i = 0; i < 22; i++)
		if (!isalnum((unsigned char)key[i]) && key[i] != '+' &&
		    key[i] != '/')
			return false;
	/* EVP_DecodeBlock does not strip padding: 18 bytes, the last 2 pad. */
	return EVP_DecodeBlock(raw, (const unsigned char *)key, 24) == 18;
}

int
nw_ws_accept_key(const char *key, size_t len, char out[NW_WS_ACCEPT_LEN + 1])
{
	unsigned char in[128], md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (len > sizeof(in) - (sizeof(GUID) - 1))
		return -1;
	memcpy(in, key, len);
	memcpy(in + len, GUID, sizeof(GUID) - 1);
	if (EVP_Digest(in, len + sizeof(GUID) - 1, md, &mdlen, EVP_sha1(),
	        NULL) != 1 ||
	    mdlen != 20)
		return -1;
	if (EVP_EncodeBlock((unsigned char *)out, md, 20) != NW_WS_ACCEPT_LEN)
		return -1;
	return 0;
}

bool
nw_ws_list_has(const char *list, size_t len, const char *token)
{
	size_t tlen = strlen(token), i = 0;

	while (i < len) {
		size_t s, e;

		while (i < len &&
		    (list[i] == ' ' || list[i] == '\t' || list[i] == ','))
			i++;
		s = i;
		while (i < len && list[i] != ',')
			i++;
		e = i;
		while (e > s && (list[e - 1] == ' ' || list[e - 1] == '\t'))
			e--;
		if (e - s == tlen && strncasecmp(list + s, token, tlen) == 0)
			return true;
	}
	return false;
}
