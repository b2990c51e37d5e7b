#include "daemon/config.h"

#include <glob.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <set>

#include "common/section_reader.h"
#include "common/strings.h"
#include "probes/tcp_probe.h"

namespace rollguard {
namespace {

namespace fs = std::filesystem;

std::string Resolve(const std::string& directory, const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  return (fs::path(directory) / path).lexically_normal().string();
}

std::string JoinErrors(const std::vector<std::string>& errors) {
  std::string joined;
  for (const std::string& error : errors) {
    if (!joined.empty()) joined += '\n';
    joined += error;
  }
  return joined;
}

// Tracks names per kind across all files: "rule api is already defined at a.rules:3".
class NameRegistry {
 public:
  bool Claim(const std::string& kind, const IniSection& section, std::vector<std::string>* errors) {
    auto [it, inserted] = seen_[kind].emplace(section.name, section.where);
    if (!inserted) {
      errors->push_back(section.where.ToString() + ": [" + section.header + "]: " + kind + " \"" +
                        section.name + "\" is already defined at " + it->second.ToString());
    }
    return inserted;
  }

 private:
  std::map<std::string, std::map<std::string, SourceLocation>> seen_;
};

void ParseDaemonSection(const IniSection& section, const std::string& directory,
                        DaemonSettings* daemon, std::vector<std::string>* errors) {
  SectionReader reader(section, errors);
  if (!section.name.empty()) reader.Error("[daemon] takes no name");
  const std::vector<IniEntry> includes = reader.All("include");
  if (!includes.empty()) {
    daemon->include_globs.clear();
    for (const IniEntry& entry : includes) {
      for (const std::string& glob : SplitWords(entry.value)) {
        daemon->include_globs.push_back(glob);
      }
    }
  }
  daemon->listen = reader.String("listen", daemon->listen);
  daemon->state_dir = Resolve(directory, reader.String("state_dir", daemon->state_dir));
  daemon->socket = Resolve(directory, reader.String("socket", daemon->socket));
  daemon->dry_run = reader.Bool("dry_run", daemon->dry_run);
  if (const auto name = reader.Single("name")) {
    daemon->name = name->value;
    if (daemon->name.empty() || daemon->name.find_first_of(" \t|:") != std::string::npos) {
      reader.ErrorAt(*name,
                     "expected a name without spaces, '|' or ':', got \"" + name->value + "\"");
    }
  }
  if (daemon->state_dir.empty()) reader.Error("state_dir must not be empty");
  reader.Finish();
}

// The keys of a fleet breaker (docs/fleet.md).
FleetSettings ParseFleetSettings(SectionReader& reader, const std::string& directory) {
  FleetSettings fleet;
  if (const auto redis = reader.Required("redis")) {
    fleet.redis = redis->value;
    if (auto address = ParseTcpAddress(redis->value)) {
      fleet.target.host = address->host;
      fleet.target.port = address->port;
    } else {
      reader.ErrorAt(*redis,
                     "expected host:port or [ipv6]:port with a port from 1 to 65535, got \"" +
                         redis->value + "\"");
    }
  }
  if (const auto password = reader.Single("password_file")) {
    const std::string path = Resolve(directory, password->value);
    std::string contents;
    std::string error;
    if (!ReadWholeFile(path, &contents, &error)) {
      reader.ErrorAt(*password, "expected a readable file, got \"" + path + "\" (" + error + ")");
    } else if (Trim(contents).empty()) {
      reader.ErrorAt(*password, "expected a password in \"" + path + "\", got an empty file");
    } else {
      fleet.target.password = std::string(Trim(contents));
    }
  }
  fleet.target.db = static_cast<int>(reader.Integer("db", 0, 0, 1 << 20));
  fleet.key_prefix = reader.String("key_prefix", fleet.key_prefix);
  fleet.fail_open = reader.Bool("fail_open", false);
  fleet.target.timeout = reader.DurationValue("timeout", std::chrono::seconds(2));
  if (fleet.target.timeout.count() <= 0) reader.Error("timeout must be longer than 0s");
  fleet.lease = reader.DurationValue("lease", fleet.lease);
  if (fleet.lease < std::chrono::seconds(1)) reader.Error("lease must be at least 1s");
  return fleet;
}

void ParseBreakerSection(const IniSection& section, const std::string& directory, Config* config,
                         std::vector<std::string>* errors) {
  SectionReader reader(section, errors);
  if (!section.name.empty() && !IsValidName(section.name)) {
    reader.Error("breaker names are lowercase: [a-z][a-z0-9_]*");
  }
  if (section.name == "default") {
    reader.Error(
        "\"default\" is reserved for the unnamed [breaker]; use [breaker] or another name");
  }
  BreakerConfig breaker;
  breaker.name = section.name;
  breaker.where = section.where;
  breaker.policy.max_actions =
      static_cast<int>(reader.Integer("max_actions", breaker.policy.max_actions, 1, 1000));
  breaker.policy.window = reader.DurationValue("window", breaker.policy.window);
  breaker.policy.cooldown = reader.DurationValue("cooldown", breaker.policy.cooldown);
  if (breaker.policy.window.count() <= 0) reader.Error("window must be longer than 0s");
  const auto scope = reader.Single("scope");
  if (scope && scope->value != "local" && scope->value != "fleet") {
    reader.ErrorAt(*scope, "expected local or fleet, got \"" + scope->value + "\"");
  }
  if (scope && scope->value == "fleet") {
    breaker.fleet = ParseFleetSettings(reader, directory);
  } else {
    for (const char* key :
         {"redis", "password_file", "db", "key_prefix", "fail_open", "timeout", "lease"}) {
      if (const auto entry = reader.Single(key)) reader.ErrorAt(*entry, "only with scope = fleet");
    }
  }
  reader.Finish();
  auto existing = std::find_if(config->breakers.begin(), config->breakers.end(),
                               [&](const BreakerConfig& b) { return b.name == breaker.name; });
  if (existing != config->breakers.end()) {
    *existing = breaker;  // the default breaker is pre-seeded; an explicit one replaces it
  } else {
    config->breakers.push_back(breaker);
  }
}

std::optional<std::vector<ActionStatusRange>> ParseActionStatusRanges(std::string_view text) {
  std::vector<ActionStatusRange> ranges;
  auto parse_code = [](std::string_view digits) -> int {
    digits = Trim(digits);
    if (digits.size() != 3) return -1;
    int code = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return -1;
      code = code * 10 + (c - '0');
    }
    return code >= 100 && code <= 599 ? code : -1;
  };
  for (const std::string& item : SplitWords(text)) {  // "200-299 304" or "200-299,304"
    size_t start = 0;
    while (start <= item.size()) {
      size_t comma = item.find(',', start);
      if (comma == std::string::npos) comma = item.size();
      const std::string_view part = Trim(std::string_view(item).substr(start, comma - start));
      start = comma + 1;
      if (part.empty()) continue;
      ActionStatusRange range;
      const size_t dash = part.find('-');
      if (dash == std::string_view::npos) {
        range.low = range.high = parse_code(part);
      } else {
        range.low = parse_code(part.substr(0, dash));
        range.high = parse_code(part.substr(dash + 1));
      }
      if (range.low < 0 || range.high < 0 || range.low > range.high) return std::nullopt;
      ranges.push_back(range);
    }
  }
  if (ranges.empty()) return std::nullopt;
  return ranges;
}

// Checks the {{ NAME }} / {{ NAME | json }} placeholders of an http action body; an empty
// string when all are known, else what is wrong.
std::string CheckBodyTemplate(std::string_view body) {
  size_t at = 0;
  while ((at = body.find("{{", at)) != std::string_view::npos) {
    const size_t close = body.find("}}", at + 2);
    if (close == std::string_view::npos) return "a \"{{\" has no closing \"}}\"";
    std::string_view inner = Trim(body.substr(at + 2, close - at - 2));
    std::string_view name = inner;
    if (const size_t bar = inner.find('|'); bar != std::string_view::npos) {
      name = Trim(inner.substr(0, bar));
      const std::string_view filter = Trim(inner.substr(bar + 1));
      if (filter != "json") {
        return "unknown filter \"" + std::string(filter) + "\" (expected json)";
      }
    }
    bool known = false;
    for (std::string_view variable : kActionBodyVariables) known = known || variable == name;
    if (!known) {
      std::string list;
      for (std::string_view variable : kActionBodyVariables) {
        list += (list.empty() ? "" : ", ") + std::string(variable);
      }
      return "unknown variable \"" + std::string(name) + "\" (expected one of " + list + ")";
    }
    at = close + 2;
  }
  return "";
}

bool IsValidHttpMethod(std::string_view method) {
  for (char c : method) {
    if (c < 'A' || c > 'Z') return false;
  }
  return true;
}

bool IsHeaderLine(std::string_view header) {
  const size_t colon = header.find(':');
  if (colon == 0 || colon == std::string_view::npos) return false;
  for (char c : header.substr(0, colon)) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || std::strchr("!#$%&'*+-.^_`|~", c))) {
      return false;
    }
  }
  return header.find_first_of("\r\n") == std::string_view::npos;
}

void ParseActionSection(const IniSection& section, Config* config,
                        std::vector<std::string>* errors) {
  SectionReader reader(section, errors);
  ActionConfig action;
  action.name = section.name;
  action.where = section.where;
  if (const auto type = reader.Required("type")) {
    action.type = type->value;
    if (action.type != "exec" && action.type != "http" && action.type != "systemd") {
      reader.ErrorAt(*type, "expected exec, http or systemd, got \"" + action.type + "\"");
    }
  }
  // Keys of the other types are unknown keys for this type: Finish() reports them.
  if (action.type == "exec") {
    const bool shell = reader.Bool("shell", false);
    if (const auto command = reader.Required("command")) {
      if (shell) {
        action.argv = {"/bin/sh", "-c", command->value};
      } else {
        SplitCommandResult split = SplitCommandLine(command->value);
        if (!split.error.empty()) {
          reader.ErrorAt(*command, "expected a command line: " + split.error);
        } else {
          action.argv = std::move(split.argv);
        }
      }
    }
    if (const auto user = reader.Single("user")) {
      action.user = user->value;
      if (getpwnam(action.user.c_str()) == nullptr) {
        reader.ErrorAt(*user,
                       "expected an existing user, no user \"" + action.user + "\" on this system");
      }
    }
  } else if (action.type == "http") {
    action.method = reader.String("method", action.method);
    if (action.method.empty() || !IsValidHttpMethod(action.method)) {
      reader.Error("method: expected an HTTP method such as POST, got \"" + action.method + "\"");
    }
    if (const auto url = reader.Required("url")) {
      action.url = url->value;
      if (action.url.rfind("http://", 0) != 0 && action.url.rfind("https://", 0) != 0) {
        reader.ErrorAt(*url, "expected an http:// or https:// URL, got \"" + action.url + "\"");
      }
    }
    for (const IniEntry& header : reader.All("header")) {
      if (!IsHeaderLine(header.value)) {
        reader.ErrorAt(header, "expected \"Name: value\", got \"" + header.value + "\"");
      } else {
        action.headers.push_back(header.value);
      }
    }
    if (const auto body = reader.Single("body")) {
      action.body = body->value;
      if (std::string problem = CheckBodyTemplate(action.body); !problem.empty()) {
        reader.ErrorAt(*body,
                       "expected a template with {{ variable }} or "
                       "{{ variable | json }}: " +
                           problem);
      }
    }
    if (const auto expect = reader.Single("expect_status")) {
      if (auto ranges = ParseActionStatusRanges(expect->value)) {
        action.expect_status = std::move(*ranges);
        action.expect_status_text = expect->value;
      } else {
        reader.ErrorAt(*expect, "expected status codes or ranges such as 200-299,304, got \"" +
                                    expect->value + "\"");
      }
    }
    action.timeout = std::chrono::seconds(30);
  } else if (action.type == "systemd") {
    if (const auto unit = reader.Required("unit")) {
      action.unit = unit->value;
      if (action.unit.empty() || action.unit.find('/') != std::string::npos) {
        reader.ErrorAt(*unit, "expected a unit name such as api.service");
      }
    }
    if (const auto operation = reader.Required("operation")) {
      action.operation = operation->value;
      if (action.operation != "restart" && action.operation != "stop" &&
          action.operation != "start" && action.operation != "reload") {
        reader.ErrorAt(*operation,
                       "expected restart, stop, start or reload, got \"" + action.operation + "\"");
      }
    }
    action.timeout = std::chrono::minutes(1);
  }
  action.timeout = reader.DurationValue("timeout", action.timeout);
  action.cooldown = reader.DurationValue("cooldown", action.cooldown);
  action.breaker = reader.String("breaker");
  if (const auto scope = reader.Single("scope")) {
    if (scope->value != "local" && scope->value != "fleet") {
      reader.ErrorAt(*scope, "expected local or fleet, got \"" + scope->value + "\"");
    }
    action.fleet = scope->value == "fleet";
  }
  action.dry_run = reader.Bool("dry_run", false);
  if (action.timeout.count() <= 0) reader.Error("timeout must be longer than 0s");
  if (const auto arm = reader.Single("arm")) {
    action.arm = reader.DurationValue("arm", Duration{0});
    if (action.arm->count() <= 0) reader.ErrorAt(*arm, "expected a duration longer than 0s");
  }
  if (const auto verify = reader.Single("verify")) {
    action.verify = reader.DurationValue("verify", Duration{0});
    if (action.verify->count() <= 0) {
      reader.ErrorAt(*verify, "expected a duration longer than 0s");
    }
  }
  if (const auto escalate = reader.Single("escalate")) {
    action.escalate = escalate->value;
    if (!action.verify) {
      reader.ErrorAt(*escalate, "needs verify = DURATION: escalation happens when verify fails");
    }
    if (action.escalate == action.name) {
      reader.ErrorAt(*escalate, "an action cannot escalate to itself");
    }
  }
  reader.Finish();
  config->actions.push_back(std::move(action));
}

// Expands one include glob relative to the config folder. A glob that matches nothing is
// fine (an empty rules.d); a read error is not.
void ExpandGlob(const std::string& directory, const std::string& pattern,
                std::vector<std::string>* files, std::vector<std::string>* errors) {
  const std::string absolute = Resolve(directory, pattern);
  glob_t matches{};
  const int rc = glob(absolute.c_str(), GLOB_ERR, nullptr, &matches);
  if (rc == 0) {
    for (size_t i = 0; i < matches.gl_pathc; ++i) files->emplace_back(matches.gl_pathv[i]);
  } else if (rc != GLOB_NOMATCH) {
    errors->push_back("include " + pattern + ": cannot be read");
  }
  globfree(&matches);
}

// Parses every section of the rule-bearing documents and compiles the rules.
void LoadSections(const std::vector<IniDocument>& documents, bool has_main, Config* config,
                  std::vector<std::string>* errors) {
  NameRegistry names;
  std::vector<RuleDefinition> rules;
  std::vector<ProbeDeclaration> probe_declarations;
  ProbeParseContext probe_context{config->directory};
  // [prometheus] sections first: a promql probe in any file may name one.
  for (const IniDocument& document : documents) {
    for (const IniSection& section : document.sections) {
      if (section.kind != "prometheus" || !names.Claim("prometheus", section, errors)) continue;
      if (auto server = ParsePrometheusSection(section, config->directory, errors)) {
        probe_context.prometheus_servers.push_back(std::move(*server));
      }
    }
  }
  for (size_t d = 0; d < documents.size(); ++d) {
    const bool is_main = has_main && d == 0;
    for (const IniSection& section : documents[d].sections) {
      const std::string& kind = section.kind;
      if (kind == "daemon") {
        if (!is_main) {
          errors->push_back(section.where.ToString() +
                            ": [daemon] belongs in the main config, not in a rule file");
        }
        continue;  // parsed before includes were expanded
      }
      if (kind == "prometheus") continue;  // parsed above
      if (kind == "breaker") {
        if (names.Claim("breaker", section, errors)) {
          ParseBreakerSection(section, config->directory, config, errors);
        }
        continue;
      }
      if (kind == "probe" || kind == "rule" || kind == "action" || kind == "notifier") {
        if (!IsValidName(section.name)) {
          errors->push_back(section.where.ToString() + ": [" + section.header + "]: expected [" +
                            kind + " NAME] with NAME matching [a-z][a-z0-9_]*");
          continue;
        }
        if (!names.Claim(kind, section, errors)) continue;
      }
      if (kind == "probe") {
        auto probe = ParseProbeSection(section, probe_context);
        if (!probe) {
          errors->push_back(probe.error().message);
          continue;
        }
        const ProbeSpec& spec = (*probe)->spec();
        probe_declarations.push_back({spec.name, spec.type, spec.interval, spec.where});
        config->probes.push_back(std::move(*probe));
      } else if (kind == "rule") {
        auto rule = ParseRuleSection(section);
        if (!rule) {
          errors->push_back(rule.error().message);
          continue;
        }
        rules.push_back(std::move(*rule));
      } else if (kind == "action") {
        ParseActionSection(section, config, errors);
      } else if (kind == "notifier") {
        NotifierConfig notifier;
        if (ParseNotifierSection(section, config->directory, &notifier, errors)) {
          config->notifiers.push_back(std::move(notifier));
        }
      } else {
        errors->push_back(section.where.ToString() + ": [" + section.header +
                          "]: unknown section kind \"" + kind +
                          "\" (expected daemon, breaker, prometheus, "
                          "probe, rule, action or notifier)");
      }
    }
  }

  // Cross references: every action a rule names exists; every breaker an action names exists.
  for (const RuleDefinition& rule : rules) {
    for (int g = 0; g < kGradeCount; ++g) {
      for (const std::string& action : rule.actions_on[g]) {
        if (config->FindAction(action) == nullptr) {
          errors->push_back(rule.actions_where[g].ToString() + ": [rule " + rule.name + "] on_" +
                            std::string(GradeName(static_cast<Grade>(g))) + ": unknown action \"" +
                            action + "\" (define it in an [action " + action + "] section)");
        }
      }
    }
  }
  // Every notifier a rule's `notify` names exists. Without a main config (`rollguard
  // test` with rule files only) there are no notifiers to check against.
  for (const RuleDefinition& rule : rules) {
    if (!has_main) break;
    for (const std::string& name : rule.notify) {
      const bool known = std::any_of(config->notifiers.begin(), config->notifiers.end(),
                                     [&](const NotifierConfig& n) { return n.name == name; });
      if (!known) {
        errors->push_back(rule.where.ToString() + ": [rule " + rule.name +
                          "] notify: unknown notifier \"" + name + "\" (define it in a [notifier " +
                          name + "] section)");
      }
    }
  }
  for (const ActionConfig& action : config->actions) {
    const BreakerConfig* breaker = config->FindBreaker(action.breaker);
    if (breaker == nullptr) {
      errors->push_back(action.where.ToString() + ": [action " + action.name +
                        "] breaker: unknown breaker \"" + action.breaker + "\"");
    } else if (action.fleet && !breaker->fleet) {
      // The claim lives in the fleet breaker's Redis: that is where the fleet meets.
      errors->push_back(action.where.ToString() + ": [action " + action.name +
                        "] scope: fleet needs a breaker with scope = fleet (it names the Redis "
                        "where daemons claim the incident); breaker \"" +
                        (action.breaker.empty() ? "default" : action.breaker) + "\" is local");
    }
    if (!action.escalate.empty() && config->FindAction(action.escalate) == nullptr) {
      errors->push_back(action.where.ToString() + ": [action " + action.name +
                        "] escalate: unknown action \"" + action.escalate +
                        "\" (define it in an [action " + action.escalate + "] section)");
    }
  }

  if (!errors->empty()) return;
  auto compiled = RuleSet::Compile(std::move(rules), std::move(probe_declarations));
  if (!compiled) {
    errors->push_back(compiled.error().message);
    return;
  }
  config->rules = std::make_shared<RuleSet>(std::move(*compiled));
  for (const std::string& warning : config->rules->Warnings()) config->warnings.push_back(warning);
}

Config EmptyConfig(const std::string& path) {
  Config config;
  config.path = path;
  config.directory = fs::absolute(path).parent_path().lexically_normal().string();
  config.breakers.push_back(BreakerConfig{"", BreakerPolicy{}, {path, 0}, std::nullopt});
  return config;
}

}  // namespace

const ActionConfig* Config::FindAction(std::string_view name) const {
  for (const ActionConfig& action : actions) {
    if (action.name == name) return &action;
  }
  return nullptr;
}

const BreakerConfig* Config::FindBreaker(std::string_view name) const {
  for (const BreakerConfig& breaker : breakers) {
    if (breaker.name == name) return &breaker;
  }
  return nullptr;
}

LoadedConfig LoadConfig(const std::string& path) {
  LoadedConfig loaded;
  std::string contents;
  std::string read_error;
  if (!ReadWholeFile(path, &contents, &read_error)) {
    loaded.error = {path + ": cannot read the config: " + read_error, true};
    return loaded;
  }
  auto main_document = ParseIni(contents, path);
  if (!main_document) {
    loaded.error = {main_document.error().message, false};
    return loaded;
  }
  Config config = EmptyConfig(path);
  std::vector<std::string> errors;
  int daemon_sections = 0;
  for (const IniSection& section : main_document->sections) {
    if (section.kind != "daemon") continue;
    if (++daemon_sections > 1) {
      errors.push_back(section.where.ToString() + ": [daemon] may appear only once");
      continue;
    }
    ParseDaemonSection(section, config.directory, &config.daemon, &errors);
  }
  if (config.daemon.name.empty()) {
    char host[256] = {};
    if (gethostname(host, sizeof host - 1) == 0) config.daemon.name = host;
    if (config.daemon.name.empty()) config.daemon.name = "rollguard";
  }

  std::vector<IniDocument> documents{std::move(*main_document)};
  for (const std::string& pattern : config.daemon.include_globs) {
    ExpandGlob(config.directory, pattern, &config.rule_files, &errors);
  }
  std::sort(config.rule_files.begin(), config.rule_files.end());
  config.rule_files.erase(std::unique(config.rule_files.begin(), config.rule_files.end()),
                          config.rule_files.end());
  for (const std::string& file : config.rule_files) {
    auto document = ReadIniFile(file);
    if (!document) {
      errors.push_back(document.error().message);
      continue;
    }
    documents.push_back(std::move(*document));
  }
  if (config.rule_files.empty()) {
    config.warnings.push_back(path + ": the include globs match no rule file");
  }
  LoadSections(documents, /*has_main=*/true, &config, &errors);
  if (!errors.empty()) {
    loaded.error = {JoinErrors(errors), false};
    return loaded;
  }
  loaded.config = std::move(config);
  return loaded;
}

LoadedDaemonSettings LoadDaemonSettings(const std::string& path) {
  LoadedDaemonSettings loaded;
  std::string contents;
  std::string read_error;
  if (!ReadWholeFile(path, &contents, &read_error)) {
    loaded.error = {path + ": cannot read the config: " + read_error, true};
    return loaded;
  }
  auto document = ParseIni(contents, path);
  if (!document) {
    loaded.error = {document.error().message, false};
    return loaded;
  }
  const Config empty = EmptyConfig(path);
  DaemonSettings settings;
  std::vector<std::string> errors;
  for (const IniSection& section : document->sections) {
    if (section.kind == "daemon") ParseDaemonSection(section, empty.directory, &settings, &errors);
  }
  if (!errors.empty()) {
    loaded.error = {JoinErrors(errors), false};
    return loaded;
  }
  loaded.settings = std::move(settings);
  return loaded;
}

LoadedConfig LoadRuleFiles(const std::vector<std::string>& rule_files,
                           const std::string& main_config) {
  LoadedConfig loaded;
  std::vector<std::string> errors;
  std::vector<IniDocument> documents;
  Config config = EmptyConfig(main_config.empty() ? rule_files.front() : main_config);
  if (!main_config.empty()) {
    auto main_document = ReadIniFile(main_config);
    if (!main_document) {
      loaded.error = {main_document.error().message, true};
      return loaded;
    }
    documents.push_back(std::move(*main_document));
  }
  for (const std::string& file : rule_files) {
    auto document = ReadIniFile(file);
    if (!document) {
      errors.push_back(document.error().message);
      continue;
    }
    config.rule_files.push_back(file);
    documents.push_back(std::move(*document));
  }
  LoadSections(documents, /*has_main=*/!main_config.empty(), &config, &errors);
  if (!errors.empty()) {
    loaded.error = {JoinErrors(errors), false};
    return loaded;
  }
  loaded.config = std::move(config);
  return loaded;
}

}  // namespace rollguard
