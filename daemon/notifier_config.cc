#include "daemon/notifier_config.h"

#include <cstdlib>
#include <filesystem>

#include "common/section_reader.h"
#include "common/strings.h"

namespace rollguard {
namespace {

// Resolves `env:NAME`; nullopt (error recorded) when unset. Values are never quoted back.
std::optional<std::string> FromEnv(SectionReader& reader, const IniEntry& entry) {
  const std::string name(Trim(std::string_view(entry.value).substr(4)));
  const char* value = name.empty() ? nullptr : std::getenv(name.c_str());
  if (value == nullptr) {
    reader.ErrorAt(entry, "expected environment variable \"" + name + "\" to be set, got it unset");
    return std::nullopt;
  }
  return std::string(Trim(value));
}

bool LooksLikeHttpUrl(std::string_view url) {
  return (StartsWith(url, "http://") && url.size() > 7) ||
         (StartsWith(url, "https://") && url.size() > 8);
}

}  // namespace

std::string_view NotifierTypeName(NotifierType type) {
  switch (type) {
    case NotifierType::kSlack:
      return "slack";
    case NotifierType::kWebhook:
      return "webhook";
    case NotifierType::kAlertmanager:
      return "alertmanager";
  }
  return "slack";
}

bool ParseNotifierSection(const IniSection& section, const std::string& base_directory,
                          NotifierConfig* notifier, std::vector<std::string>* errors) {
  const size_t errors_before = errors->size();
  SectionReader reader(section, errors);
  notifier->name = section.name;
  notifier->where = section.where;
  if (const auto type = reader.Required("type")) {
    if (type->value == "slack") {
      notifier->type = NotifierType::kSlack;
    } else if (type->value == "webhook") {
      notifier->type = NotifierType::kWebhook;
    } else if (type->value == "alertmanager") {
      notifier->type = NotifierType::kAlertmanager;
    } else {
      reader.ErrorAt(*type, "expected slack, webhook or alertmanager, got \"" + type->value + "\"");
    }
  }

  const auto url = reader.Single("url");
  const auto url_file = reader.Single("webhook_url_file");
  std::optional<IniEntry> source;  // the entry the URL came from, for errors
  if (url && url_file) {
    reader.ErrorAt(*url_file, "expected either url or webhook_url_file, got both");
  } else if (url) {
    source = url;
    if (StartsWith(url->value, "env:")) {
      if (auto value = FromEnv(reader, *url)) notifier->url = *value;
    } else {
      notifier->url = url->value;
    }
  } else if (url_file) {
    source = url_file;
    if (StartsWith(url_file->value, "env:")) {
      if (auto value = FromEnv(reader, *url_file)) notifier->url = *value;
    } else {
      std::string path = url_file->value;
      if (!path.empty() && path[0] != '/') {
        path = (std::filesystem::path(base_directory) / path).lexically_normal().string();
      }
      std::string contents;
      std::string error;
      if (!ReadWholeFile(path, &contents, &error)) {
        reader.ErrorAt(*url_file, "expected a readable file holding the URL, got \"" + path +
                                      "\" (" + error + ")");
      } else {
        notifier->url = std::string(Trim(contents));
        if (notifier->url.find_first_of("\r\n") != std::string::npos) {
          reader.ErrorAt(*url_file,
                         "expected one line (the URL) in \"" + path + "\", got several lines");
          notifier->url.clear();
          source.reset();
        }
      }
    }
  } else {
    reader.Error("missing key: expected url or webhook_url_file");
  }
  // The value is a secret: say what is wrong with it without showing it.
  if (source && !notifier->url.empty() && !LooksLikeHttpUrl(notifier->url)) {
    reader.ErrorAt(*source,
                   "expected an http:// or https:// URL (the value is not shown: it "
                   "may be a secret)");
  } else if (source && notifier->url.empty() && errors->size() == errors_before) {
    reader.ErrorAt(*source, "expected a URL, got an empty value");
  }

  if (const auto min_grade = reader.Single("min_grade")) {
    if (auto grade = ParseGrade(min_grade->value)) {
      notifier->min_grade = *grade;
    } else {
      reader.ErrorAt(*min_grade, "expected excellent, good, warning, critical or failure, got \"" +
                                     min_grade->value + "\"");
    }
  }
  notifier->repeat = reader.DurationValue("repeat", notifier->repeat);
  notifier->timeout = reader.DurationValue("timeout", notifier->timeout);
  notifier->max_queue = static_cast<size_t>(
      reader.Integer("max_queue", static_cast<int64_t>(notifier->max_queue), 1, 100000));
  notifier->max_tries = static_cast<int>(reader.Integer("max_tries", notifier->max_tries, 1, 1000));
  notifier->resend = reader.DurationValue("resend", notifier->resend);
  const auto external_url = reader.Single("external_url");
  if (external_url) notifier->external_url = external_url->value;
  if (notifier->timeout.count() <= 0) reader.Error("timeout must be longer than 0s");
  if (notifier->repeat.count() < 0) reader.Error("repeat must not be negative");
  if (notifier->resend.count() <= 0) reader.Error("resend must be longer than 0s");
  if (external_url && !LooksLikeHttpUrl(external_url->value)) {
    reader.ErrorAt(*external_url,
                   "expected an http:// or https:// URL, got \"" + external_url->value + "\"");
  }
  reader.Finish();
  return errors->size() == errors_before;
}

}  // namespace rollguard
