#include "common/shared_names.h"

#include <catch2/catch.hpp>
#include <string>

namespace rollguard {
namespace {

TEST_CASE("shared names: one copy per name, gone with its last holder", "[shared_names]") {
  SharedNames names;
  const std::string long_name = "phase.first_byte, longer than std::string holds inline";
  const std::string* first = names.Acquire(long_name);
  const std::string* second = names.Acquire(std::string_view(long_name));
  CHECK(first == second);
  CHECK(*first == long_name);
  const std::string* other = names.Acquire("status");
  CHECK(other != first);
  CHECK(names.size() == 2);

  // Other names coming and going leave a held one where it is.
  for (int i = 0; i < 100; ++i) names.Release(names.Acquire("json.key" + std::to_string(i)));
  CHECK(names.size() == 2);
  CHECK(names.Acquire(long_name) == first);

  names.Release(first);
  names.Release(second);
  CHECK(names.size() == 2);  // one holder left
  names.Release(first);
  CHECK(names.size() == 1);
  names.Release(other);
  CHECK(names.size() == 0);
}

}  // namespace
}  // namespace rollguard
