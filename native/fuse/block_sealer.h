// Where a CryptNode's blocks are sealed and opened (docs/CHANNEL.md §8): a local key in this process (host
// placement, crypt_node.cc LocalSealer) or spd over the block channel (appliance placement, block_client.h). The
// file format around the AEAD (AAD, trailers, slots, compression, redo records) stays in crypt_node either way.
#pragma once

#include <errno.h>

#include <cstddef>
#include <cstdint>

namespace pem::fuse {

// One block: seal `len` bytes at `in` into nonce | ciphertext | tag (len + 28 bytes at out), or open such a sealed
// block (len = its payload bytes) into `len` bytes at out. `aad` is the block's 44-byte AAD (FORMAT.md §4.3).
struct BlockJob {
  const uint8_t* aad;
  const uint8_t* in;
  uint32_t len;
  uint8_t* out;
};

class BlockSealer {
 public:
  virtual ~BlockSealer() = default;
  // Every job, as one batch. 0; EIO (a block failed authentication or was refused: nothing of it is returned);
  // EACCES (the grant does not allow it); or a lost-sealer errno (IsSealerLost).
  virtual int Run(bool seal, BlockJob* jobs, size_t n) = 0;
};

// The sealer cannot serve any more (its server timed out or closed: ETIMEDOUT, ENOTCONN; its grant is gone:
// EKEYEXPIRED): the node asks the io hook for another (`key`) and the call is retried once.
inline bool IsSealerLost(int err) { return err == ENOTCONN || err == ETIMEDOUT || err == EKEYEXPIRED; }

}  // namespace pem::fuse
