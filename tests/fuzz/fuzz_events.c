/* libFuzzer target: the events body parser (events_parse) on arbitrary
 * bytes, as POST /v1/events hands it any body up to --max-body. */
#include <stddef.h>
#include <stdint.h>

#include "events.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	json_t *list = events_parse((const char *)data, size, err, sizeof(err));

	/* The contract: a non-empty array of objects, or NULL and a reason. */
	if (list != NULL &&
	    (!json_is_array(list) || json_array_size(list) == 0))
		__builtin_trap();
	if (list == NULL && err[0] == '\0')
		__builtin_trap();
	json_decref(list);
	return 0;
}
