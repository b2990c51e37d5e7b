#include "common/shared_names.h"

namespace rollguard {

const std::string* SharedNames::Acquire(std::string_view name) {
  auto it = users_.find(name);
  if (it == users_.end()) it = users_.emplace(std::string(name), 0).first;
  ++it->second;
  return &it->first;
}

void SharedNames::Release(const std::string* name) {
  auto it = users_.find(*name);
  if (--it->second == 0) users_.erase(it);
}

}  // namespace rollguard
