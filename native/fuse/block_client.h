// pemfs's native end of the block channel (docs/CHANNEL.md §8): one connection per spd server, shared by every
// worker thread; requests are pipelined (ids), a reader thread per connection hands each reply's bytes straight into
// the waiting worker's buffers. A RemoteSealer is one grant on one connection.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../block_channel.h"
#include "block_sealer.h"

namespace pem::fuse {

constexpr int kBlockCallTimeoutMs = 2000;  // the channels' request deadline (docs/CHANNEL.md §5)

// The `remote` part of an io answer's hostKey: where to send the blocks and under which grant.
struct RemoteSpec {
  std::string server;  // spd member id (one connection per server)
  std::string host;
  int port = 0;
  uint8_t token[blockch::kTokenBytes] = {};
  uint8_t keys[blockch::kChannelKeyBytes] = {};
  uint8_t grant[blockch::kGrantBytes] = {};
  ~RemoteSpec();
};

// What a server's last reply said (selection tables on the JS side read it through session.stats()).
struct ServerSeen {
  std::string server;
  float load = 0;
  uint16_t weight = 0;
  uint64_t pv = 0;
  bool alive = false;
  uint64_t requests = 0;  // sent to this server by every connection so far
};

class BlockLink;

class BlockLinks {
 public:
  ~BlockLinks() { Clear(); }
  // A sealer for `r`: on the live connection to r.server, or a new one made with r's token and keys. nullptr + why.
  std::shared_ptr<BlockSealer> Sealer(const RemoteSpec& r, std::string* why);
  void Clear();
  std::vector<ServerSeen> Seen();
  std::atomic<uint64_t> requests{0}, blocks{0}, connects{0}, lost{0};

 private:
  friend class BlockLink;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<BlockLink>> links_;
  std::map<std::string, std::shared_ptr<std::atomic<uint64_t>>> sent_;  // requests per server, across connections
};

}  // namespace pem::fuse
