/*
 * main.c: the `narwhal` command line: run a master, check a config, or talk
 * to a running master (`reload`, `rollback`, `status`).
 *
 * Exit codes: 0 clean, 1 config error or fatal, 2 usage; `reload --wait`
 * adds its own (see client.c and narwhal(8)).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "master.h"

/* A flag the parser did not know, as opposed to a bad config value. */
static int
is_usage_error(const char *err)
{
	return strncmp(err, "unknown option", 14) == 0 ||
	    strncmp(err, "usage:", 6) == 0 ||
	    strncmp(err, "more than one", 13) == 0 ||
	    strncmp(err, "-c: more than one", 17) == 0 ||
	    strstr(err, "requires a value") != NULL ||
	    strstr(err, "requires an argument") != NULL;
}

int
main(int argc, char **argv)
{
	char err[1024];
	struct nw_config *config;
	int check = 0, check_app = 0, print = 0, n = 0;
	char **args;

	if (argc > 1 && (strcmp(argv[1], "reload") == 0 ||
			    strcmp(argv[1], "rollback") == 0 ||
			    strcmp(argv[1], "status") == 0))
		return nw_client_main(argc - 1, argv + 1);
	args = calloc((size_t)argc + 1, sizeof *args);
	if (args == NULL)
		return 1;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--check-config") == 0) {
			check = 1;
		} else if (strcmp(argv[i], "--print-config") == 0) {
			print = 1;
		} else if (strcmp(argv[i], "--check-app") == 0) {
			check = check_app = 1;
		} else if (strcmp(argv[i], "-h") == 0 ||
		    strcmp(argv[i], "--help") == 0) {
			nw_config_usage(stdout);
			free(args);
			return 0;
		} else if (strcmp(argv[i], "-v") == 0 ||
		    strcmp(argv[i], "--version") == 0) {
			printf("narwhal %s\n", NW_VERSION);
			free(args);
			return 0;
		} else {
			args[n++] = argv[i];
		}
	}
	if (print) {
		int rc = nw_config_print(n, args, stdout, err, sizeof err);

		if (rc != 0)
			fprintf(stderr, "narwhal: %s\n", err);
		free(args);
		return rc;
	}
	config = nw_config_load(n, args, err, sizeof err);
	if (config == NULL) {
		fprintf(stderr, "narwhal: %s\n", err);
		if (is_usage_error(err))
			fprintf(stderr, "Try 'narwhal --help'.\n");
		free(args);
		return is_usage_error(err) ? 2 : 1;
	}
	if (check) {
		struct nw_libcurl libcurl = { 0 };

		/* The master refuses such a config: so does the check. */
		if (config->ready_path != NULL &&
		    nw_libcurl_load(&libcurl, err, sizeof err) < 0) {
			fprintf(stderr, "narwhal: %s\n", err);
			nw_config_free(config);
			free(args);
			return 1;
		}
		for (size_t i = 0; i < config->nnotes; i++)
			fprintf(stderr, "narwhal: %s\n", config->notes[i]);
		printf("narwhal: %s: ok\n",
		    config->path ? config->path : "command line");
		fflush(stdout);
		n = check_app ? nw_check_app(config) : 0;
		nw_config_free(config);
		free(args);
		return n;
	}
	/* args stays: every reload reads the same flags again. */
	return nw_master_run(n, args, config);
}
