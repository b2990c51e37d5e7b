// The `rollguard` command line (spec §6): parses argv and runs a subcommand.
// Exit codes: 0 ok, 1 a check/test failed, 2 usage or unreadable input.
#pragma once

namespace rollguard {

int RunCommandLine(int argc, char** argv);

}  // namespace rollguard
