#include "daemon/cli.h"

#include <cstdio>

namespace rollguard {

int RunCommandLine(int, char**) {
  std::puts("rollguard " ROLLGUARD_VERSION);
  return 0;
}

}  // namespace rollguard
