// Named domain-separation strings: every signature and every at-rest AEAD names what it protects. ONLY APPEND.
// A signature covers ctx || 0x00 || message (lib/crypto/sign.ts), so a signature made for one purpose never
// verifies for another. Never change a string once released: old signatures and sealed files name it.

/** Cluster heartbeat message (DESIGN §4). */
export const SIG_CTX_CLUSTER_MSG = 'pem/v1 cluster message'
/** The source's signature over an encrypted policy set: index, wrapped keys and sealed configuration (DESIGN §4). */
export const SIG_CTX_POLICY_SET = 'pem/v1 policy set'
/** A member vouching for a new member's key (sponsorship). */
export const SIG_CTX_SPONSOR = 'pem/v1 sponsor'
/** An audit log checkpoint. */
export const SIG_CTX_AUDIT = 'pem/v1 audit checkpoint'
/** The origin member's signature over the configuration version its admin change produced (lib/server/cluster/changes.ts). */
export const SIG_CTX_CHANGE_ORIGIN = 'pem/v1 change origin'
/** An admin's signature, with the key derived from the admin's password, over one member-list change record (lib/server/cluster/changes.ts). */
export const SIG_CTX_ADMIN_MEMBER_CHANGE = 'pem/v1 admin member change'
/** An admin's answer to a member's login challenge, with the same password-derived key (lib/crypto/admin-key.ts). */
export const SIG_CTX_ADMIN_LOGIN = 'pem/v1 admin login'
/** An admin's signature, with the key of the old password, over the admin's new record (lib/server/cluster/changes.ts). */
export const SIG_CTX_ADMIN_PASSWD = 'pem/v1 admin password change'

/** Associated data labels for sealAtRest (lib/crypto/seal.ts). */
export const AAD_CTX_CONFIG_STORE = 'pem/v1 config store'
export const AAD_CTX_KEYRING = 'pem/v1 keyring'
export const AAD_CTX_POLICY_SET = 'pem/v1 policy set body'
/** The embedded store's key set in its store file, wrapped under the recovery key (lib/cli/embedded-store.ts). */
export const AAD_CTX_EMBEDDED_KEYS = 'pem/v1 embedded store keys'
/** Associated data of a per-file key a member seals to a host with sealPair (lib/crypto/file-key.ts). */
export const AAD_CTX_FILE_KEY = 'pem/v1 file key to host'

/** HKDF info of the configuration store key, derived from the member's identity seed (lib/server/store.ts). */
export const KDF_CTX_STORE_KEY = 'pem/v1 configuration store key'
/** Prefix of the scrypt salt of an admin's signing key seed, so it never equals the password hash (lib/crypto/admin-key.ts). */
export const KDF_CTX_ADMIN_SIGN_KEY = 'pem/v1 admin signing key'
/** HMAC message prefix of the proof that upgrades an admin record without a signing key (lib/crypto/admin-key.ts). */
export const MAC_CTX_ADMIN_KEY_UPGRADE = 'pem/v1 admin key upgrade'
/** HMAC message prefix of the stand-in salt a member hands out for a user it does not have (lib/server/admin.ts). */
export const MAC_CTX_UNKNOWN_ADMIN_SALT = 'pem/v1 unknown admin salt'

export const SIG_CONTEXTS: readonly string[] = [SIG_CTX_CLUSTER_MSG, SIG_CTX_POLICY_SET, SIG_CTX_SPONSOR, SIG_CTX_AUDIT, SIG_CTX_CHANGE_ORIGIN, SIG_CTX_ADMIN_MEMBER_CHANGE, SIG_CTX_ADMIN_LOGIN, SIG_CTX_ADMIN_PASSWD]
