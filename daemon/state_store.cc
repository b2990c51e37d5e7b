#include "daemon/state_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <utility>

namespace rollguard {
namespace {

using Json = nlohmann::ordered_json;

constexpr int kFormat = 1;
constexpr char kStateFile[] = "state.json";
constexpr char kTempFile[] = "state.json.tmp";

std::string ErrnoText(int error) { return std::strerror(error); }

// Thrown inside ParseState only, with the JSON path of the offending value.
class BadValue : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

const Json& ObjectAt(const Json& value, const std::string& where) {
  if (!value.is_object()) throw BadValue(where + ": expected an object");
  return value;
}

int64_t MillisAt(const Json& value, const std::string& where) {
  if (!value.is_number_integer()) throw BadValue(where + ": expected integer milliseconds");
  return value.get<int64_t>();
}

std::string StringAt(const Json& value, const std::string& where) {
  if (!value.is_string()) throw BadValue(where + ": expected a string");
  return value.get<std::string>();
}

bool BoolAt(const Json& value, const std::string& where) {
  if (!value.is_boolean()) throw BadValue(where + ": expected true or false");
  return value.get<bool>();
}

// A member that is absent or null reads as missing.
const Json* Member(const Json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string Path(const std::string& parent, const std::string& key) {
  return parent + "[\"" + key + "\"]";
}

// Calls `each(name, value, where)` for every member of the object at `key`, if present.
template <typename Each>
void ForEachMember(const Json& root, const char* key, Each each) {
  const Json* member = Member(root, key);
  if (member == nullptr) return;
  const std::string where = key;
  for (const auto& [name, value] : ObjectAt(*member, where).items()) {
    each(name, value, Path(where, name));
  }
}

PersistedState FromJson(const Json& root) {
  ObjectAt(root, "document");
  if (const Json* format = Member(root, "format")) {
    const int64_t version = MillisAt(*format, "format");
    if (version > kFormat) {
      throw BadValue("format " + std::to_string(version) +
                     " was written by a newer rollguard (this one reads format " +
                     std::to_string(kFormat) + ")");
    }
  }
  PersistedState state;
  ForEachMember(
      root, "breakers", [&](const std::string& name, const Json& value, const std::string& where) {
        ObjectAt(value, where);
        BreakerState breaker;
        if (const Json* admitted = Member(value, "admitted_ms")) {
          if (!admitted->is_array()) throw BadValue(where + ".admitted_ms: expected an array");
          for (const Json& item : *admitted) {
            breaker.admitted.push_back(FromMillis(MillisAt(item, where + ".admitted_ms[]")));
          }
        }
        if (const Json* opened = Member(value, "opened_at_ms")) {
          breaker.opened_at = FromMillis(MillisAt(*opened, where + ".opened_at_ms"));
        }
        state.breakers[name] = std::move(breaker);
      });
  ForEachMember(root, "last_runs_ms",
                [&](const std::string& name, const Json& value, const std::string& where) {
                  state.last_runs[name] = FromMillis(MillisAt(value, where));
                });
  ForEachMember(root, "rules",
                [&](const std::string& name, const Json& value, const std::string& where) {
                  ObjectAt(value, where);
                  PersistedRule rule;
                  if (const Json* grade = Member(value, "grade"))
                    rule.grade = StringAt(*grade, where + ".grade");
                  if (const Json* since = Member(value, "since_ms")) {
                    rule.since = FromMillis(MillisAt(*since, where + ".since_ms"));
                  }
                  state.rules[name] = std::move(rule);
                });
  ForEachMember(root, "incidents",
                [&](const std::string& name, const Json& value, const std::string& where) {
                  ObjectAt(value, where);
                  IncidentState incident;
                  if (const Json* id = Member(value, "id"))
                    incident.id = StringAt(*id, where + ".id");
                  if (const Json* grade = Member(value, "grade")) {
                    incident.grade = StringAt(*grade, where + ".grade");
                  }
                  if (const Json* opened = Member(value, "opened_ms")) {
                    incident.opened = FromMillis(MillisAt(*opened, where + ".opened_ms"));
                  }
                  if (const Json* acted = Member(value, "acted")) {
                    incident.acted = BoolAt(*acted, where + ".acted");
                  }
                  if (const Json* actions = Member(value, "actions_run")) {
                    if (!actions->is_array())
                      throw BadValue(where + ".actions_run: expected an array");
                    for (const Json& action : *actions) {
                      incident.actions_run.push_back(StringAt(action, where + ".actions_run[]"));
                    }
                  }
                  state.incidents[name] = std::move(incident);
                });
  if (const Json* paused = Member(root, "paused_until_ms")) {
    state.paused_until = FromMillis(MillisAt(*paused, "paused_until_ms"));
  }
  if (const Json* records = Member(root, "journal_records")) {
    if (!records->is_number_unsigned()) throw BadValue("journal_records: expected a count");
    state.journal_records = records->get<uint64_t>();
  }
  if (const Json* verifies = Member(root, "verifies")) {
    if (!verifies->is_array()) throw BadValue("verifies: expected an array");
    for (const Json& item : *verifies) {
      const std::string where = "verifies[]";
      ObjectAt(item, where);
      PersistedVerify verify;
      const auto text = [&](const char* key, std::string* out) {
        if (const Json* value = Member(item, key)) *out = StringAt(*value, where + "." + key);
      };
      text("rule", &verify.rule);
      text("action", &verify.action);
      text("incident", &verify.incident);
      text("grade", &verify.grade);
      text("previous_grade", &verify.previous_grade);
      text("reason", &verify.reason);
      text("service", &verify.service);
      text("summary", &verify.summary);
      text("escalate", &verify.escalate);
      if (const Json* value = Member(item, "verify_ms")) {
        verify.verify = Duration(MillisAt(*value, where + ".verify_ms"));
      }
      if (const Json* value = Member(item, "finished_ms")) {
        verify.finished = FromMillis(MillisAt(*value, where + ".finished_ms"));
      }
      if (const Json* value = Member(item, "detected_ms")) {
        verify.detected_at = FromMillis(MillisAt(*value, where + ".detected_ms"));
      }
      state.verifies.push_back(std::move(verify));
    }
  }
  ForEachMember(root, "deploys",
                [&](const std::string& name, const Json& value, const std::string& where) {
                  ObjectAt(value, where);
                  DeployRecord deploy;
                  if (const Json* version = Member(value, "version")) {
                    deploy.version = StringAt(*version, where + ".version");
                  }
                  if (const Json* time = Member(value, "time_ms")) {
                    deploy.time = FromMillis(MillisAt(*time, where + ".time_ms"));
                  }
                  state.deploys[name] = std::move(deploy);
                });
  return state;
}

Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t written = ::write(fd, data.data(), data.size());
    if (written < 0) {
      if (errno == EINTR) continue;
      return Fail(ErrnoText(errno));
    }
    data.remove_prefix(static_cast<size_t>(written));
  }
  return {};
}

Result<std::string> ReadAllFrom(int fd) {
  std::string contents;
  char buffer[16384];
  while (true) {
    const ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got < 0) {
      if (errno == EINTR) continue;
      return Fail(ErrnoText(errno));
    }
    if (got == 0) return contents;
    contents.append(buffer, static_cast<size_t>(got));
  }
}

const Clock& DefaultClock() {
  static const SystemClock clock;
  return clock;
}

}  // namespace

const DeployRecord* LatestDeployFor(const std::map<std::string, DeployRecord>& deploys,
                                    const std::string& service) {
  const DeployRecord* latest = nullptr;
  for (const auto& [deployed, record] : deploys) {
    if (!service.empty() && !deployed.empty() && deployed != service) continue;
    if (latest == nullptr || record.time > latest->time) latest = &record;
  }
  return latest;
}

std::string SerializeState(const PersistedState& state) {
  Json root = Json::object();
  root["format"] = kFormat;
  Json breakers = Json::object();
  for (const auto& [name, breaker] : state.breakers) {
    Json admitted = Json::array();
    for (TimePoint t : breaker.admitted) admitted.push_back(ToMillis(t));
    Json entry = {{"admitted_ms", std::move(admitted)}};
    if (breaker.opened_at) entry["opened_at_ms"] = ToMillis(*breaker.opened_at);
    breakers[name] = std::move(entry);
  }
  root["breakers"] = std::move(breakers);
  Json last_runs = Json::object();
  for (const auto& [name, time] : state.last_runs) last_runs[name] = ToMillis(time);
  root["last_runs_ms"] = std::move(last_runs);
  Json rules = Json::object();
  for (const auto& [name, rule] : state.rules) {
    rules[name] = {{"grade", rule.grade}, {"since_ms", ToMillis(rule.since)}};
  }
  root["rules"] = std::move(rules);
  Json incidents = Json::object();
  for (const auto& [name, incident] : state.incidents) {
    incidents[name] = {{"id", incident.id},
                       {"grade", incident.grade},
                       {"opened_ms", ToMillis(incident.opened)},
                       {"acted", incident.acted},
                       {"actions_run", incident.actions_run}};
  }
  root["incidents"] = std::move(incidents);
  if (state.paused_until) root["paused_until_ms"] = ToMillis(*state.paused_until);
  Json deploys = Json::object();
  for (const auto& [service, deploy] : state.deploys) {
    deploys[service] = {{"version", deploy.version}, {"time_ms", ToMillis(deploy.time)}};
  }
  root["deploys"] = std::move(deploys);
  Json verifies = Json::array();
  for (const PersistedVerify& verify : state.verifies) {
    verifies.push_back({{"rule", verify.rule},
                        {"action", verify.action},
                        {"incident", verify.incident},
                        {"grade", verify.grade},
                        {"previous_grade", verify.previous_grade},
                        {"reason", verify.reason},
                        {"service", verify.service},
                        {"summary", verify.summary},
                        {"escalate", verify.escalate},
                        {"verify_ms", verify.verify.count()},
                        {"finished_ms", ToMillis(verify.finished)},
                        {"detected_ms", ToMillis(verify.detected_at)}});
  }
  root["verifies"] = std::move(verifies);
  root["journal_records"] = state.journal_records;
  // Names and versions come from users; replace invalid UTF-8 rather than throw.
  return root.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

Result<PersistedState> ParseState(std::string_view json) {
  Json root = Json::parse(json.begin(), json.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return Fail("not valid JSON");
  try {
    return FromJson(root);
  } catch (const BadValue& error) {
    return Fail(error.what());
  }
}

Result<StateStore> StateStore::Open(const std::string& dir) { return Open(dir, DefaultClock()); }

Result<StateStore> StateStore::Open(const std::string& dir, const Clock& clock) {
  if (dir.empty()) return Fail("state directory: no path given");
  if (::mkdir(dir.c_str(), 0750) == 0) {
    // mkdir's mode is filtered by the umask; the state directory's mode is ours to set.
    if (::chmod(dir.c_str(), 0750) != 0) {
      return Fail("cannot set mode 0750 on state directory " + dir + ": " + ErrnoText(errno));
    }
  } else if (errno != EEXIST) {
    return Fail("cannot create state directory " + dir + ": " + ErrnoText(errno));
  }
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Fail("cannot open state directory " + dir + ": " + ErrnoText(errno));
  if (::faccessat(fd, ".", W_OK, AT_EACCESS) != 0) {
    const int error = errno;
    ::close(fd);
    return Fail("state directory " + dir + " is not writable: " + ErrnoText(error));
  }
  return StateStore(dir, fd, &clock);
}

StateStore::StateStore(std::string dir, int dir_fd, const Clock* clock)
    : dir_(std::move(dir)), dir_fd_(dir_fd), clock_(clock) {}

StateStore::StateStore(StateStore&& other) noexcept
    : dir_(std::move(other.dir_)),
      dir_fd_(std::exchange(other.dir_fd_, -1)),
      clock_(other.clock_) {}

StateStore& StateStore::operator=(StateStore&& other) noexcept {
  if (this != &other) {
    if (dir_fd_ >= 0) ::close(dir_fd_);
    dir_ = std::move(other.dir_);
    dir_fd_ = std::exchange(other.dir_fd_, -1);
    clock_ = other.clock_;
  }
  return *this;
}

StateStore::~StateStore() {
  if (dir_fd_ >= 0) ::close(dir_fd_);
}

std::string StateStore::StatePath() const { return dir_ + "/" + kStateFile; }

Result<PersistedState> StateStore::Load() {
  const std::string path = StatePath();
  const int fd = ::openat(dir_fd_, kStateFile, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return PersistedState{};
    return Fail("cannot read " + path + ": " + ErrnoText(errno));
  }
  Result<std::string> contents = ReadAllFrom(fd);
  ::close(fd);
  if (!contents) return Fail("cannot read " + path + ": " + contents.error().message);

  Result<PersistedState> state = ParseState(*contents);
  if (state) return state;

  // Keep the evidence and refuse, rather than start with breakers silently reset.
  const std::string aside =
      std::string(kStateFile) + ".corrupt-" + std::to_string(ToMillis(clock_->Now()));
  std::string message = path + " is corrupt (" + state.error().message + ")";
  if (::renameat(dir_fd_, kStateFile, dir_fd_, aside.c_str()) == 0) {
    ::fsync(dir_fd_);
    message += "; moved aside to " + dir_ + "/" + aside +
               "; breakers, cooldowns and incidents it held are not restored";
  } else {
    message += "; could not move it aside to " + dir_ + "/" + aside + ": " + ErrnoText(errno);
  }
  return Fail(message);
}

Status StateStore::Save(const PersistedState& state) {
  const std::string temp_path = dir_ + "/" + kTempFile;
  const std::string document = SerializeState(state);
  const int fd = ::openat(dir_fd_, kTempFile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return Fail("cannot write " + temp_path + ": " + ErrnoText(errno));
  auto fail = [&](const std::string& what, int error) -> Status {
    ::unlinkat(dir_fd_, kTempFile, 0);
    return Fail(what + ": " + ErrnoText(error));
  };
  if (Status written = WriteAll(fd, document); !written) {
    ::close(fd);
    ::unlinkat(dir_fd_, kTempFile, 0);
    return Fail("cannot write " + temp_path + ": " + written.error().message);
  }
  if (::fsync(fd) != 0) {
    const int error = errno;
    ::close(fd);
    return fail("cannot fsync " + temp_path, error);
  }
  if (::close(fd) != 0) return fail("cannot write " + temp_path, errno);
  if (::renameat(dir_fd_, kTempFile, dir_fd_, kStateFile) != 0) {
    return fail("cannot rename " + temp_path + " to " + StatePath(), errno);
  }
  // The rename is durable only once the directory entry is.
  if (::fsync(dir_fd_) != 0) return Fail("cannot fsync " + dir_ + ": " + ErrnoText(errno));
  return {};
}

}  // namespace rollguard
