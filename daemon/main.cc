// rollguard: builds the command-line front end and maps its outcome to an exit code.
#include <gnutls/gnutls.h>

#include "daemon/cli.h"

// GnuTLS comes in only as a dependency of libcurl's and libpq's dependencies (librtmp,
// libldap), for protocols rollguard never speaks: its library constructor would initialise
// it in every process anyway.
extern "C" {
GNUTLS_SKIP_GLOBAL_INIT
}

int main(int argc, char** argv) { return rollguard::RunCommandLine(argc, argv); }
