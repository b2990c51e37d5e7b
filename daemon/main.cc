// rollguard: builds the command-line front end and maps its outcome to an exit code.
#include "daemon/cli.h"

int main(int argc, char** argv) { return rollguard::RunCommandLine(argc, argv); }
