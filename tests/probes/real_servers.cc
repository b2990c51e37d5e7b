#include "tests/probes/real_servers.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

namespace rollguard::testing {
namespace {

struct Account {
  uid_t uid = 0;
  gid_t gid = 0;
  bool switch_user = false;  // only when running as root
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string Tail(const std::string& text, size_t bytes = 2000) {
  return text.size() <= bytes ? text : text.substr(text.size() - bytes);
}

std::string MakeTempDir(const char* prefix) {
  std::string pattern = (std::filesystem::temp_directory_path() / prefix).string() + "-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) return "";
  return pattern;
}

std::string RandomSecret() {
  std::random_device random;
  const char* alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
  std::string secret;
  for (int i = 0; i < 24; ++i) secret += alphabet[random() % 57];
  return secret;
}

// Forks and execs `argv` (as `account`), output appended to `log`. -1 on failure.
pid_t Spawn(const std::vector<std::string>& argv, const Account& account, const std::string& log) {
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  const int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return -1;
  if (account.switch_user && ::fchown(log_fd, account.uid, account.gid) != 0) {
    ::close(log_fd);
    return -1;
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Only async-signal-safe calls until exec.
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    if (account.switch_user && (::setgroups(0, nullptr) != 0 || ::setgid(account.gid) != 0 ||
                                ::setuid(account.uid) != 0)) {
      ::_exit(126);
    }
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(log_fd);
  return pid;
}

// Runs `argv` to completion; its exit status (-1 when it could not run).
int Run(const std::vector<std::string>& argv, const Account& account, const std::string& log) {
  const pid_t pid = Spawn(argv, account, log);
  if (pid < 0) return -1;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Stops a child: `signal`, then SIGKILL after `grace`; reaps it.
void StopChild(pid_t pid, int signal, std::chrono::milliseconds grace) {
  if (pid <= 0) return;
  ::kill(pid, signal);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
}

bool Exited(pid_t pid) {
  int status = 0;
  return ::waitpid(pid, &status, WNOHANG) == pid;
}

bool CanConnect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  ::close(fd);
  return ok;
}

// The newest PostgreSQL server binaries installed (/usr/lib/postgresql/N/bin).
std::string PostgresBinDir() {
  glob_t found{};
  std::string best;
  int best_version = -1;
  if (::glob("/usr/lib/postgresql/*/bin/postgres", 0, nullptr, &found) == 0) {
    for (size_t i = 0; i < found.gl_pathc; ++i) {
      const std::string path = found.gl_pathv[i];
      const std::string version = path.substr(20, path.find('/', 20) - 20);
      const int number = std::atoi(version.c_str());
      if (number > best_version) {
        best_version = number;
        best = path.substr(0, path.size() - std::string("/postgres").size());
      }
    }
  }
  ::globfree(&found);
  return best;
}

bool ChownTo(const std::string& path, const Account& account) {
  return !account.switch_user || ::chown(path.c_str(), account.uid, account.gid) == 0;
}

bool PostgresAccount(Account* account, std::string* why_not) {
  if (::geteuid() != 0) return true;  // run as ourselves
  const passwd* user = ::getpwnam("postgres");
  if (user == nullptr) {
    *why_not = "running as root and there is no 'postgres' user to run PostgreSQL as";
    return false;
  }
  account->uid = user->pw_uid;
  account->gid = user->pw_gid;
  account->switch_user = true;
  return true;
}

}  // namespace

int FreeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) {
    socklen_t length = sizeof(address);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
    port = ntohs(address.sin_port);
  }
  ::close(fd);
  return port;
}

SilentListener::SilentListener() {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      ::listen(fd_, 128) == 0) {
    socklen_t length = sizeof(address);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
  }
}

SilentListener::~SilentListener() {
  if (fd_ >= 0) ::close(fd_);
}

// ---------------------------------------------------------------------------------------
// PostgreSQL

std::unique_ptr<PostgresServer> PostgresServer::Start(std::string* why_not, bool* skip) {
  *skip = false;
  std::unique_ptr<PostgresServer> server(new PostgresServer);
  server->bin_ = PostgresBinDir();
  if (server->bin_.empty()) {
    *skip = true;
    *why_not = "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres)";
    return nullptr;
  }
  if (!server->Init(why_not)) return nullptr;
  return server;
}

bool PostgresServer::Init(std::string* why_not) {
  Account account;
  if (!PostgresAccount(&account, why_not)) return false;
  directory_ = MakeTempDir("rollguard-postgres");
  if (directory_.empty() || !ChownTo(directory_, account) || ::chmod(directory_.c_str(), 0700)) {
    *why_not = "could not make a temporary folder for PostgreSQL";
    return false;
  }
  const std::string log = directory_ + "/server.log";
  const std::string data = directory_ + "/data";
  password_ = RandomSecret();
  const std::string password_file = directory_ + "/password";
  std::ofstream(password_file) << password_ << "\n";
  ChownTo(password_file, account);

  if (Run({bin_ + "/initdb", "-D", data, "-U", kUser, "--pwfile=" + password_file,
           "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "--no-instructions",
           "--encoding=UTF8", "--locale=C"},
          account, log) != 0) {
    *why_not = "initdb failed:\n" + Tail(ReadFile(log));
    return false;
  }
  std::filesystem::remove(password_file);

  // TLS: a self-signed certificate for 127.0.0.1/localhost, made at test time.
  const std::string openssl =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256"
      " -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost -days 2"
      " -keyout '" +
      directory_ + "/server.key' -out '" + directory_ + "/server.crt' >/dev/null 2>&1";
  if (std::system(openssl.c_str()) != 0) {
    *why_not = "the openssl CLI could not make a certificate";
    return false;
  }
  const std::string key = directory_ + "/server.key";
  ::chmod(key.c_str(), 0600);
  ChownTo(key, account);
  ChownTo(directory_ + "/server.crt", account);

  {
    std::ofstream hba(data + "/pg_hba.conf", std::ios::trunc);
    hba << "local all all trust\n"
        << "host all all 127.0.0.1/32 scram-sha-256\n";
  }
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = FreeLoopbackPort();
    {
      std::ofstream conf(data + "/postgresql.auto.conf", std::ios::trunc);
      conf << "listen_addresses = '127.0.0.1'\n"
           << "port = " << port_ << "\n"
           << "unix_socket_directories = '" << directory_ << "'\n"
           << "ssl = on\n"
           << "ssl_cert_file = '" << directory_ << "/server.crt'\n"
           << "ssl_key_file = '" << key << "'\n"
           << "password_encryption = 'scram-sha-256'\n"
           << "fsync = off\n"
           << "synchronous_commit = off\n"
           << "full_page_writes = off\n"
           << "max_connections = 50\n"
           << "shared_buffers = 16MB\n"
           << "dynamic_shared_memory_type = posix\n";
    }
    ChownTo(data + "/postgresql.auto.conf", account);
    pid_ = Spawn({bin_ + "/postgres", "-D", data}, account, log);
    if (pid_ < 0) {
      *why_not = "could not start postgres";
      return false;
    }
    // postmaster.pid's 8th line says "ready" once connections are accepted.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      if (Exited(pid_)) {
        pid_ = -1;
        break;
      }
      std::istringstream lines(ReadFile(data + "/postmaster.pid"));
      std::string line;
      for (int i = 0; i < 8 && std::getline(lines, line); ++i) {
      }
      if (line.rfind("ready", 0) == 0 && CanConnect(port_)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (pid_ > 0) break;  // running but never ready: give up
    // Exited: most likely another process took the port meanwhile; try another.
  }
  *why_not = "postgres did not become ready:\n" + Tail(ReadFile(log));
  return false;
}

PostgresServer::~PostgresServer() {
  Stop();
  if (!directory_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(directory_, ignored);
  }
}

std::string PostgresServer::Dsn() const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " user=" + kUser + " dbname=postgres";
}

void PostgresServer::Stop() {
  // SIGQUIT: immediate shutdown, the throwaway cluster needs no checkpoint.
  StopChild(pid_, SIGQUIT, std::chrono::seconds(10));
  pid_ = -1;
}

std::string PostgresServer::Log() const { return ReadFile(directory_ + "/server.log"); }

// ---------------------------------------------------------------------------------------
// Redis

std::unique_ptr<RedisServer> RedisServer::Start(const std::string& password, std::string* why_not,
                                                bool* skip) {
  *skip = false;
  const std::string binary = "/usr/bin/redis-server";
  if (::access(binary.c_str(), X_OK) != 0) {
    *skip = true;
    *why_not = "redis-server is not installed (no /usr/bin/redis-server)";
    return nullptr;
  }
  std::unique_ptr<RedisServer> server(new RedisServer);
  server->password_ = password;
  server->directory_ = MakeTempDir("rollguard-redis");
  if (server->directory_.empty()) {
    *why_not = "could not make a temporary folder for redis";
    return nullptr;
  }
  const std::string log = server->directory_ + "/server.log";
  for (int attempt = 0; attempt < 5; ++attempt) {
    server->port_ = FreeLoopbackPort();
    std::vector<std::string> argv = {binary,   "--port",           std::to_string(server->port_),
                                     "--bind", "127.0.0.1",        "--save",
                                     "",       "--appendonly",     "no",
                                     "--dir",  server->directory_, "--daemonize",
                                     "no",     "--databases",      "16"};
    if (!password.empty()) {
      argv.push_back("--requirepass");
      argv.push_back(password);
    }
    server->pid_ = Spawn(argv, Account{}, log);
    if (server->pid_ < 0) {
      *why_not = "could not start redis-server";
      return nullptr;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      if (Exited(server->pid_)) {
        server->pid_ = -1;
        break;
      }
      if (CanConnect(server->port_)) return server;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (server->pid_ > 0) break;
  }
  *why_not = "redis-server did not start:\n" + Tail(ReadFile(log));
  return nullptr;
}

RedisServer::~RedisServer() {
  StopChild(pid_, SIGTERM, std::chrono::seconds(5));
  if (!directory_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(directory_, ignored);
  }
}

std::string RedisServer::Command(int db, const std::vector<std::string>& argv) const {
  // The password goes through the environment (REDISCLI_AUTH), not the command line.
  std::string command = "REDISCLI_AUTH='" + password_ + "' redis-cli -h 127.0.0.1 -p " +
                        std::to_string(port_) + " -n " + std::to_string(db);
  for (const std::string& arg : argv) command += " '" + arg + "'";
  std::string output;
  if (FILE* pipe = ::popen(command.c_str(), "r")) {
    char buffer[256];
    size_t n = 0;
    while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
    ::pclose(pipe);
  }
  while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
  return output;
}

void RedisServer::Kill() {
  StopChild(pid_, SIGKILL, std::chrono::seconds(5));
  pid_ = -1;
}

}  // namespace rollguard::testing
