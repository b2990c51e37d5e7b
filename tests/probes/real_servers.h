// Throwaway real servers for tests: a PostgreSQL cluster and a redis-server, each in its
// own temporary folder, listening on 127.0.0.1 on a free port, stopped and removed by the
// destructor. Tests use the Debian packages' binaries (postgresql, redis-server) as they
// are: no mocks.
//
// PostgreSQL refuses to run as root, so when the test runs as root the cluster is created
// and run as the `postgres` system user (which the postgresql package creates), with a
// temporary folder it owns. Authentication over TCP is scram-sha-256 only (pg_hba), for a
// superuser with a password; TLS is on with a self-signed certificate made by the
// openssl CLI. Unix sockets live in the temporary folder, never in /run/postgresql.
//
// Start() returns nullptr with a reason when a server truly cannot be started here (its
// package is missing): the caller skips with that message. Any other failure (the server
// starts but never becomes ready) also returns nullptr with the server's log tail, and
// tests treat that as a failure. Not thread-safe; one object per server.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

namespace rollguard::testing {

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then closed).
int FreeLoopbackPort();

// A hostile server: listens on a free 127.0.0.1 port and never accepts or answers. The
// kernel completes TCP handshakes into the backlog, so clients connect and then wait for
// a greeting or a reply that never comes.
class SilentListener {
 public:
  SilentListener();
  ~SilentListener();
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

class PostgresServer {
 public:
  // Superuser created by initdb; its password is password().
  static constexpr const char* kUser = "rollguard";

  // Creates and starts a cluster. nullptr with *why_not on failure; *skip is set when
  // the failure is "PostgreSQL is not installed" rather than a broken start.
  static std::unique_ptr<PostgresServer> Start(std::string* why_not, bool* skip);
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  int port() const { return port_; }
  const std::string& password() const { return password_; }
  // The temporary folder (holds the certificate; the test may write files here).
  const std::string& directory() const { return directory_; }
  // The server's self-signed certificate: the CA to verify it with.
  std::string certificate_file() const { return directory_ + "/server.crt"; }
  // "host=127.0.0.1 port=N user=rollguard dbname=postgres" (no password).
  std::string Dsn() const;
  // Stops the server at once (immediate shutdown); its port then refuses connections.
  void Stop();
  // The server log, for failure messages.
  std::string Log() const;

 private:
  PostgresServer() = default;
  bool Init(std::string* why_not);

  std::string bin_;
  std::string directory_;
  std::string password_;
  int port_ = 0;
  pid_t pid_ = -1;
};

class RedisServer {
 public:
  // Starts redis-server with `--requirepass password` (empty: no password), no
  // persistence. nullptr with *why_not on failure; *skip when redis-server is missing.
  static std::unique_ptr<RedisServer> Start(const std::string& password, std::string* why_not,
                                            bool* skip);
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& password() const { return password_; }
  // Runs one command with redis-cli against database `db`; its output, trimmed.
  std::string Command(int db, const std::vector<std::string>& argv) const;
  // Kills the server (SIGKILL); its port then refuses connections.
  void Kill();

 private:
  RedisServer() = default;

  std::string directory_;
  std::string password_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace rollguard::testing
