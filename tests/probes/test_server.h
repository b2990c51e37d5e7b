// A real HTTP(S) server on 127.0.0.1 for probe tests, scripted per test.
//
// It listens on port 0 (the kernel picks a free port), serves every connection on its
// own thread, records the requests it parsed, and hands each one to a handler that
// writes whatever bytes it likes — a proper response, nothing at all, a byte a second,
// an endless body. The handler sees a Connection whose Sleep() returns early once the
// server is stopping, so hostile handlers end with the test. TLS uses OpenSSL with a
// certificate the test generates (see MakeSelfSignedCertificate).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace rollguard::testing {

struct HttpRequest {
  std::string method;
  std::string target;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
};

class Connection {
 public:
  Connection(int fd, SSL* ssl, const std::atomic<bool>& stopping)
      : fd_(fd), ssl_(ssl), stopping_(stopping) {}

  // Writes all of `data`; false once the peer is gone or the server stops.
  bool Write(std::string_view data) {
    while (!data.empty()) {
      if (stopping_) return false;
      const int n = ssl_ != nullptr
                        ? SSL_write(ssl_, data.data(), static_cast<int>(data.size()))
                        : static_cast<int>(::send(fd_, data.data(), data.size(), MSG_NOSIGNAL));
      if (n <= 0) {
        if (ssl_ == nullptr && (errno == EAGAIN || errno == EINTR)) continue;
        if (ssl_ != nullptr && SSL_get_error(ssl_, n) == SSL_ERROR_WANT_WRITE) continue;
        return false;
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads some bytes: >0 bytes read, 0 at end of stream or error, -1 nothing yet.
  int Read(char* buffer, int size) {
    const int n = ssl_ != nullptr ? SSL_read(ssl_, buffer, size)
                                  : static_cast<int>(::recv(fd_, buffer, size, 0));
    if (n > 0) return n;
    if (ssl_ != nullptr) {
      const int error = SSL_get_error(ssl_, n);
      return error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE ? -1 : 0;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return -1;
    return 0;
  }

  // Sleeps `duration`; false (early) when the server is stopping.
  bool Sleep(std::chrono::milliseconds duration) {
    const auto until = std::chrono::steady_clock::now() + duration;
    while (std::chrono::steady_clock::now() < until) {
      if (stopping_) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return !stopping_;
  }

  // Blocks until the server stops: a target that accepted and never answers.
  void Hang() {
    while (Sleep(std::chrono::milliseconds(100))) {
    }
  }

  bool stopping() const { return stopping_; }

  // Ends the connection from the server's side; the serving thread sees it end too.
  void Close() { ::shutdown(fd_, SHUT_RDWR); }

 private:
  int fd_;
  SSL* ssl_;
  const std::atomic<bool>& stopping_;
};

using Handler = std::function<void(const HttpRequest&, Connection&)>;

// A complete response with Content-Length; `extra_headers` are "Name: value\r\n" lines.
inline std::string Response(int status, std::string_view body, std::string_view extra_headers = "",
                            std::string_view content_type = "text/plain") {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " Status\r\n";
  out += "Content-Type: " + std::string(content_type) + "\r\n";
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  out += std::string(extra_headers);
  out += "\r\n";
  out += std::string(body);
  return out;
}

struct TlsFiles {
  std::string certificate;  // PEM
  std::string key;          // PEM
};

class TestServer {
 public:
  explicit TestServer(Handler handler, std::optional<TlsFiles> tls = std::nullopt)
      : handler_(std::move(handler)) {
    if (tls) {
      tls_ = SSL_CTX_new(TLS_server_method());
      if (tls_ == nullptr ||
          SSL_CTX_use_certificate_chain_file(tls_, tls->certificate.c_str()) != 1 ||
          SSL_CTX_use_PrivateKey_file(tls_, tls->key.c_str(), SSL_FILETYPE_PEM) != 1) {
        throw std::runtime_error("test server: cannot load TLS certificate");
      }
    }
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        ::listen(listener_, 128) != 0) {
      throw std::runtime_error("test server: cannot listen on 127.0.0.1");
    }
    socklen_t length = sizeof(address);
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }

  ~TestServer() {
    stopping_ = true;
    acceptor_.join();
    std::vector<std::thread> workers;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      workers.swap(workers_);
    }
    for (std::thread& worker : workers) worker.join();
    ::close(listener_);
    if (tls_ != nullptr) SSL_CTX_free(tls_);
  }

  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  int port() const { return port_; }
  // The url of `path` on this server, by the host UrlHost names.
  std::string Url(std::string_view path) const {
    return std::string(tls_ != nullptr ? "https" : "http") + "://" + UrlHost() + ":" +
           std::to_string(port_) + std::string(path);
  }

  // The host urls name: 127.0.0.1, unless a UrlHostScope says otherwise. An http probe of
  // an address takes PlainHttp's path, of a name libcurl's (probes/plain_http.h); tests that
  // hold for both run once with each (EachHttpEngine).
  static std::string& UrlHost() {
    static std::string host = "127.0.0.1";
    return host;
  }

  std::vector<HttpRequest> requests() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return requests_;
  }
  int connections() const { return connections_; }

 private:
  void AcceptLoop() {
    while (!stopping_) {
      pollfd poll_fd{listener_, POLLIN, 0};
      if (::poll(&poll_fd, 1, 20) <= 0) continue;
      const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      ++connections_;
      std::lock_guard<std::mutex> lock(mutex_);
      workers_.emplace_back([this, fd] { Serve(fd); });
    }
  }

  void Serve(int fd) {
    // Reads time out so the thread notices the server stopping.
    timeval timeout{0, 20000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    SSL* ssl = nullptr;
    if (tls_ != nullptr) {
      ssl = SSL_new(tls_);
      SSL_set_fd(ssl, fd);
      int result = 0;
      while (!stopping_ && (result = SSL_accept(ssl)) != 1) {
        const int error = SSL_get_error(ssl, result);
        if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) break;
      }
      if (result != 1) {
        ERR_clear_error();
        SSL_free(ssl);
        ::close(fd);
        return;
      }
    }
    Connection connection(fd, ssl, stopping_);
    std::string buffer;
    char chunk[16384];
    while (!stopping_) {
      std::optional<HttpRequest> request = TakeRequest(buffer);
      if (!request) {
        const int n = connection.Read(chunk, sizeof(chunk));
        if (n == 0) break;
        if (n > 0) buffer.append(chunk, static_cast<size_t>(n));
        continue;
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        requests_.push_back(*request);
      }
      handler_(*request, connection);
    }
    if (ssl != nullptr) {
      SSL_shutdown(ssl);
      SSL_free(ssl);
    }
    ERR_clear_error();
    ::close(fd);
  }

  // Cuts one complete request off the front of `buffer`, if there is one.
  static std::optional<HttpRequest> TakeRequest(std::string& buffer) {
    const size_t end = buffer.find("\r\n\r\n");
    if (end == std::string::npos) return std::nullopt;
    HttpRequest request;
    size_t line_end = buffer.find("\r\n");
    const std::string line = buffer.substr(0, line_end);
    const size_t space = line.find(' ');
    request.method = line.substr(0, space);
    request.target = line.substr(space + 1, line.find(' ', space + 1) - space - 1);
    size_t position = line_end + 2;
    while (position < end) {
      line_end = buffer.find("\r\n", position);
      const std::string header = buffer.substr(position, line_end - position);
      const size_t colon = header.find(':');
      std::string name = header.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      size_t value = colon + 1;
      while (value < header.size() && header[value] == ' ') ++value;
      request.headers[name] = header.substr(value);
      position = line_end + 2;
    }
    size_t length = 0;
    if (auto it = request.headers.find("content-length"); it != request.headers.end()) {
      length = std::stoul(it->second);
    }
    if (buffer.size() < end + 4 + length) return std::nullopt;
    request.body = buffer.substr(end + 4, length);
    buffer.erase(0, end + 4 + length);
    return request;
  }

  Handler handler_;
  SSL_CTX* tls_ = nullptr;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::thread acceptor_;
  mutable std::mutex mutex_;
  std::vector<std::thread> workers_;
  std::vector<HttpRequest> requests_;
};

// A TCP port on 127.0.0.1 that refuses connections: bound (so nobody else takes it) but
// not listening, so the kernel answers a SYN with RST.
// Sets TestServer::UrlHost() for a scope.
class UrlHostScope {
 public:
  explicit UrlHostScope(std::string host) : previous_(TestServer::UrlHost()) {
    TestServer::UrlHost() = std::move(host);
  }
  ~UrlHostScope() { TestServer::UrlHost() = previous_; }
  UrlHostScope(const UrlHostScope&) = delete;
  UrlHostScope& operator=(const UrlHostScope&) = delete;

 private:
  std::string previous_;
};

// In a test case: runs it once with urls naming 127.0.0.1 (PlainHttp) and once naming
// localhost (libcurl, which tries ::1 and 127.0.0.1).
#define EACH_HTTP_ENGINE()                                 \
  const ::rollguard::testing::UrlHostScope url_host_scope( \
      GENERATE(as<std::string>{}, "127.0.0.1", "localhost"))

class RefusingPort {
 public:
  RefusingPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    socklen_t length = sizeof(address);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
  }
  ~RefusingPort() { ::close(fd_); }
  RefusingPort(const RefusingPort&) = delete;
  RefusingPort& operator=(const RefusingPort&) = delete;
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

}  // namespace rollguard::testing
