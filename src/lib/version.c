/* The library's version, from configure's AC_INIT (PACKAGE_VERSION). */
#include "graced.h"

const char *
graced_version(void)
{
	return PACKAGE_VERSION;
}
