// Typed view of the parts of sodium-native this project uses (the package ships no TypeScript types).
// Every other module reaches libsodium through this file, so the surface we depend on is listed in one place.

export interface Sodium {
  sodium_malloc: (size: number) => Buffer
  sodium_memzero: (buf: Buffer) => void
  randombytes_buf: (buf: Buffer) => void
  crypto_sign_BYTES: number
  crypto_sign_PUBLICKEYBYTES: number
  crypto_sign_SECRETKEYBYTES: number
  crypto_sign_SEEDBYTES: number
  crypto_sign_seed_keypair: (pk: Buffer, sk: Buffer, seed: Buffer) => void
  crypto_sign_detached: (sig: Buffer, message: Buffer, sk: Buffer) => void
  crypto_sign_verify_detached: (sig: Buffer, message: Buffer, pk: Buffer) => boolean
  crypto_sign_ed25519_pk_to_curve25519: (x25519pk: Buffer, ed25519pk: Buffer) => void
  crypto_sign_ed25519_sk_to_curve25519: (x25519sk: Buffer, ed25519sk: Buffer) => void
  crypto_core_ed25519_is_valid_point: (p: Buffer) => boolean
  crypto_box_PUBLICKEYBYTES: number
  crypto_box_SECRETKEYBYTES: number
  crypto_box_SEALBYTES: number
  crypto_box_seal: (out: Buffer, message: Buffer, pk: Buffer) => void
  crypto_box_seal_open: (out: Buffer, sealed: Buffer, pk: Buffer, sk: Buffer) => boolean
  crypto_kx_SESSIONKEYBYTES: number
  crypto_kx_client_session_keys: (rx: Buffer, tx: Buffer, clientPk: Buffer, clientSk: Buffer, serverPk: Buffer) => void
  crypto_kx_server_session_keys: (rx: Buffer, tx: Buffer, serverPk: Buffer, serverSk: Buffer, clientPk: Buffer) => void
  crypto_aead_xchacha20poly1305_ietf_KEYBYTES: number
  crypto_aead_xchacha20poly1305_ietf_NPUBBYTES: number
  crypto_aead_xchacha20poly1305_ietf_ABYTES: number
  crypto_aead_xchacha20poly1305_ietf_encrypt: (out: Buffer, message: Buffer, ad: Buffer | null, nsec: null, npub: Buffer, key: Buffer) => number
  crypto_aead_xchacha20poly1305_ietf_decrypt: (out: Buffer, nsec: null, ciphertext: Buffer, ad: Buffer | null, npub: Buffer, key: Buffer) => number
}

// eslint-disable-next-line @typescript-eslint/no-var-requires
export const sodium: Sodium = require('sodium-native')
