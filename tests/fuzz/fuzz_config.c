/* libFuzzer target: the options parser. The input up to its first '=' is
 * an option name and the rest its value, set with graced_config_set() and
 * read back with graced_config_get(); the whole input also goes through
 * config_parse_addr(), config_parse_seconds() and config_parse_bytes(). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "graced.h"
#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct graced_config *cfg = graced_config_new();
	char *text = strndup((const char *)data, size), *eq, *got = NULL;
	char err[512];
	struct config_addr addr;
	double seconds;
	size_t bytes;

	if (cfg == NULL || text == NULL)
		goto out;
	config_parse_addr(text, &addr);
	config_parse_seconds(text, &seconds);
	config_parse_bytes(text, &bytes);
	eq = strchr(text, '=');
	if (eq != NULL) {
		*eq = '\0';
		err[0] = '\0';
		if (graced_config_set(cfg, text, eq + 1, err, sizeof(err)) <
		    0) {
			if (err[0] == '\0')
				__builtin_trap(); /* a refusal names its reason */
			goto out;
		}
		/* What --help and the logs show must parse back to itself. */
		got = strdup(graced_config_get(cfg, text));
		if (got == NULL)
			goto out;
		if (graced_config_set(cfg, text, got, err, sizeof(err)) < 0 ||
		    strcmp(graced_config_get(cfg, text), got) != 0)
			__builtin_trap();
		graced_config_check(cfg, err, sizeof(err));
	}
out:
	free(got);
	free(text);
	graced_config_free(cfg);
	return 0;
}
