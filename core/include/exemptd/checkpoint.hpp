#pragma once
// Signed checkpoints of the audit chain. A hash chain cannot show that its newest records were
// cut off; a checkpoint (sequence number, head hash, time) signed with the daemon's key and kept
// outside the database can. Verification checks the chain against the latest checkpoint.

#include "exemptd/audit.hpp"
#include "exemptd/error.hpp"
#include "exemptd/time.hpp"

#include <cstdint>
#include <memory>
#include <string>

using EVP_PKEY = struct evp_pkey_st;

namespace exemptd {

struct Checkpoint {
    std::int64_t seq = 0;
    std::string head_hash;
    TimePoint at{};
    std::string signature;  // base64 of the signature over checkpoint_message()
};

struct PkeyFree {
    void operator()(EVP_PKEY* key) const noexcept;
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// The exact bytes a checkpoint's signature covers.
[[nodiscard]] std::string checkpoint_message(Checkpoint const& c);

// Loads a PEM private key (the daemon's TLS key by default). Thread-safe.
[[nodiscard]] boost::system::result<PkeyPtr, std::string> load_private_key(std::string const& path);

// Loads the public key of a PEM certificate, to verify checkpoints with. Thread-safe.
[[nodiscard]] boost::system::result<PkeyPtr, std::string> load_certificate_key(std::string const& path);

// Signs (SHA-256) a checkpoint of `seq` and `head_hash` at `at`. Thread-safe.
[[nodiscard]] boost::system::result<Checkpoint, std::string> sign_checkpoint(EVP_PKEY* key, std::int64_t seq,
                                                                            std::string head_hash, TimePoint at);

// True when the signature verifies with `key`. Thread-safe.
[[nodiscard]] bool verify_checkpoint_signature(EVP_PKEY* key, Checkpoint const& c);

// One JSON line: {"seq":…,"head_hash":"…","at":"…","signature":"…"} and back.
[[nodiscard]] std::string checkpoint_to_line(Checkpoint const& c);
[[nodiscard]] std::optional<Checkpoint> checkpoint_from_line(std::string_view line);

// Appends the checkpoint line to `path` and flushes it to disk. Thread-safe per file.
[[nodiscard]] boost::system::result<void, std::string> append_checkpoint(std::string const& path, Checkpoint const& c);

// The last well-formed checkpoint in a file of checkpoint lines, or nullopt.
[[nodiscard]] std::optional<Checkpoint> latest_checkpoint(std::string const& path);

// Compares a verified chain (its checker after every record was fed, plus the hash recorded at
// the checkpoint's seq, if the chain reached it) with a checkpoint: the chain must reach the
// checkpoint's seq with the same hash there. Returns the refusal, or nullopt when consistent.
[[nodiscard]] std::optional<std::string> check_against_checkpoint(Checkpoint const& c, std::int64_t last_seq,
                                                                  std::optional<std::string> const& hash_at_seq);

}  // namespace exemptd
