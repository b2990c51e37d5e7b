#include "daemon/config.h"

#include <glob.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "common/section_reader.h"
#include "common/strings.h"

namespace rollguard {
namespace {

namespace fs = std::filesystem;

// Keys and types the spec defines whose behaviour this version does not have yet: they
// get a clear error instead of "unknown key", so nobody relies on a silent no-op.
constexpr std::string_view kActionKeysNotYetSupported[] = {"arm", "verify", "escalate", "user"};
constexpr std::string_view kSectionKindsNotYetSupported[] = {"prometheus"};

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
      errors->push_back(section.where.ToString() + ": [" + section.header + "]: " + kind +
                        " \"" + section.name + "\" is already defined at " +
                        it->second.ToString());
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
  if (daemon->state_dir.empty()) reader.Error("state_dir must not be empty");
  reader.Finish();
}

void ParseBreakerSection(const IniSection& section, Config* config,
                         std::vector<std::string>* errors) {
  SectionReader reader(section, errors);
  if (!section.name.empty() && !IsValidName(section.name)) {
    reader.Error("breaker names are lowercase: [a-z][a-z0-9_]*");
  }
  if (section.name == "default") {
    reader.Error("\"default\" is reserved for the unnamed [breaker]; use [breaker] or another name");
  }
  BreakerConfig breaker;
  breaker.name = section.name;
  breaker.where = section.where;
  breaker.policy.max_actions =
      static_cast<int>(reader.Integer("max_actions", breaker.policy.max_actions, 1, 1000));
  breaker.policy.window = reader.DurationValue("window", breaker.policy.window);
  breaker.policy.cooldown = reader.DurationValue("cooldown", breaker.policy.cooldown);
  if (breaker.policy.window.count() <= 0) reader.Error("window must be longer than 0s");
  reader.Finish();
  auto existing = std::find_if(config->breakers.begin(), config->breakers.end(),
                               [&](const BreakerConfig& b) { return b.name == breaker.name; });
  if (existing != config->breakers.end()) {
    *existing = breaker;  // the default breaker is pre-seeded; an explicit one replaces it
  } else {
    config->breakers.push_back(breaker);
  }
}

void ParseActionSection(const IniSection& section, Config* config,
                        std::vector<std::string>* errors) {
  SectionReader reader(section, errors);
  ActionConfig action;
  action.name = section.name;
  action.where = section.where;
  if (const auto type = reader.Required("type")) {
    action.type = type->value;
    if (action.type == "http" || action.type == "systemd") {
      reader.ErrorAt(*type, "action type \"" + action.type +
                                "\" is not supported by this version (expected exec)");
    } else if (action.type != "exec") {
      reader.ErrorAt(*type, "expected exec, http or systemd, got \"" + action.type + "\"");
    }
  }
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
  action.timeout = reader.DurationValue("timeout", action.timeout);
  action.cooldown = reader.DurationValue("cooldown", action.cooldown);
  action.breaker = reader.String("breaker");
  action.dry_run = reader.Bool("dry_run", false);
  if (action.timeout.count() <= 0) reader.Error("timeout must be longer than 0s");
  for (std::string_view key : kActionKeysNotYetSupported) {
    if (const auto entry = reader.Single(key)) {
      reader.ErrorAt(*entry, "is not supported by this version");
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
  const ProbeParseContext probe_context{config->directory};
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
      if (kind == "breaker") {
        if (names.Claim("breaker", section, errors)) ParseBreakerSection(section, config, errors);
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
      } else if (std::find(std::begin(kSectionKindsNotYetSupported),
                           std::end(kSectionKindsNotYetSupported),
                           kind) != std::end(kSectionKindsNotYetSupported)) {
        errors->push_back(section.where.ToString() + ": [" + section.header + "]: section kind \"" +
                          kind + "\" is not supported by this version");
      } else {
        errors->push_back(section.where.ToString() + ": [" + section.header +
                          "]: unknown section kind \"" + kind +
                          "\" (expected daemon, breaker, probe, rule, action or notifier)");
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
                          "] notify: unknown notifier \"" + name +
                          "\" (define it in a [notifier " + name + "] section)");
      }
    }
  }
  for (const ActionConfig& action : config->actions) {
    if (config->FindBreaker(action.breaker) == nullptr) {
      errors->push_back(action.where.ToString() + ": [action " + action.name +
                        "] breaker: unknown breaker \"" + action.breaker + "\"");
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
  config.breakers.push_back(BreakerConfig{"", BreakerPolicy{}, {path, 0}});
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
