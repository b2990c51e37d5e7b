// SharedNames: one counted copy of each name many holders use, such as the field names
// every probe of a type reports ("phase.first_byte", "status", ...).
//
// A copy per holder of a name longer than the 15 characters std::string holds inline is a
// heap block each, and the 32-byte std::string itself: with thousands of probes holding
// the same few names, that was a large part of their memory (bench/RESULTS.md). Holders
// keep a `const std::string*` instead (8 bytes) and release it when they let go; a name
// goes with its last holder, so names that come and go (json.* fields of a body whose
// keys change) do not accumulate.
//
// Thread-safety: none; callers that share one across threads lock around it.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace rollguard {

// Hashes std::string and std::string_view alike, so a lookup by view allocates nothing.
struct NameHash {
  using is_transparent = void;
  size_t operator()(std::string_view name) const { return std::hash<std::string_view>{}(name); }
};

class SharedNames {
 public:
  // The shared copy of `name`, held for one more holder until Release. The address stays
  // valid until its last Release.
  const std::string* Acquire(std::string_view name);
  // REQUIRES: `name` came from Acquire and was not released since.
  void Release(const std::string* name);
  // Distinct names held.
  size_t size() const { return users_.size(); }

 private:
  // A node-based map: a name's address stays valid as others come and go.
  std::unordered_map<std::string, size_t, NameHash, std::equal_to<>> users_;
};

}  // namespace rollguard
