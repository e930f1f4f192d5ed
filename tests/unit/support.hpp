#pragma once
// Helpers shared by the core and daemon unit tests: fixed times, temporary folders, in-memory
// client certificates, policies from YAML text and posture reports.

#include "exemptd/policy.hpp"
#include "exemptd/posture.hpp"
#include "exemptd/time.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <boost/system/result.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

using X509 = struct x509_st;

namespace exemptd::test {

// The fixture folder tests/data, and a path inside it.
[[nodiscard]] std::string data_path(std::string_view relative);

// The whole content of a file; throws std::runtime_error when it cannot be read.
[[nodiscard]] std::string read_text(std::filesystem::path const& path);

// A time written as RFC 3339; throws std::invalid_argument for a typo in a test.
[[nodiscard]] TimePoint fixed_time(std::string_view rfc3339);

// A clock that tests can move; copies of clock() read the same instant.
class TestClock {
public:
    explicit TestClock(TimePoint start) : now_(std::make_shared<TimePoint>(start)) {}
    [[nodiscard]] Clock clock() const
    {
        return [now = now_] { return *now; };
    }
    [[nodiscard]] TimePoint now() const { return *now_; }
    void set(TimePoint t) { *now_ = t; }
    void advance(std::chrono::seconds by) { *now_ += by; }

private:
    std::shared_ptr<TimePoint> now_;
};

// A fresh folder under the system temp folder, removed with everything in it on destruction.
class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(TempDir const&) = delete;
    TempDir& operator=(TempDir const&) = delete;

    [[nodiscard]] std::filesystem::path const& path() const noexcept { return path_; }
    // A path inside the folder (not created).
    [[nodiscard]] std::string file(std::string_view name) const { return (path_ / name).string(); }
    // Writes `content` to `name` inside the folder and returns its path.
    std::string write(std::string_view name, std::string_view content) const;

private:
    std::filesystem::path path_;
};

// What goes into a test client certificate.
struct CertSpec {
    std::string common_name = "test client";
    std::vector<std::string> uris;    // URI SAN entries, e.g. "urn:exemptd:role:endpoint"
    std::vector<std::string> emails;  // email SAN entries
    bool client_auth = true;          // extendedKeyUsage clientAuth
    bool server_auth = false;         // extendedKeyUsage serverAuth
    std::optional<bool> ca;           // basicConstraints CA:TRUE/FALSE, or no extension
};

struct X509Deleter {
    void operator()(X509* cert) const noexcept;
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;

// A signed X.509 v3 certificate built in memory with the OpenSSL 3 API (EC P-256 key).
[[nodiscard]] X509Ptr make_certificate(CertSpec const& spec);

// Certificates for the three roles.
[[nodiscard]] CertSpec endpoint_cert(std::string const& device_id);
[[nodiscard]] CertSpec person_cert(std::string_view role, std::string const& email);

// The folder holding the policy fixtures (tests/data/policies), used as the base of terms files.
[[nodiscard]] std::string policy_dir();

// A policy in the shape of SPEC §5: MDM-01 (enrolled, requires agreement byod-v3), ENC-01
// (disk_encrypted equals true, 72 h grace), LOCK-01 (screen_lock_seconds 1..900), OS-01
// (os_patch_age_days max 30), HR-03 (user, documentary) and IAM-01 (account, documentary);
// check-in interval 600 s, stale after 72 h, skew 300 s.
extern std::string const kStandardPolicyYaml;

// Parses policy YAML with exemptd::parse_policy against policy_dir(); fails the test (throws)
// when the policy is refused.
[[nodiscard]] Policy policy_from_yaml(std::string_view yaml, std::string const& file_name = "test-policy.yaml");

// The standard policy.
[[nodiscard]] Policy standard_policy();

// Builds a valid posture report body (SPEC §4), with facts that pass the standard policy; each
// setter replaces one field so that a test can break exactly one thing.
class PostureJson {
public:
    explicit PostureJson(std::string const& device_id = "LAPTOP-0042",
                         TimePoint reported_at = fixed_time("2026-11-27T21:00:00Z"));

    PostureJson& set(std::string_view key, boost::json::value value);
    PostureJson& erase(std::string_view key);
    PostureJson& fact(std::string_view key, boost::json::value value);
    PostureJson& erase_fact(std::string_view key);
    PostureJson& nonce(std::string_view nonce) { return set("nonce", boost::json::value(nonce)); }
    PostureJson& reported_at(TimePoint t) { return set("reported_at", boost::json::value(format_rfc3339(t))); }

    [[nodiscard]] std::string str() const;
    // The decoded report; throws when the body does not decode.
    [[nodiscard]] PostureReport report() const;
    [[nodiscard]] boost::json::object const& object() const noexcept { return object_; }

private:
    boost::json::object object_;
};

// How a failed result reads in a test report.
[[nodiscard]] inline std::string describe(ApiError const& e)
{
    return "error " + std::to_string(e.status) + " " + e.code + ": " + e.message;
}
[[nodiscard]] inline std::string describe(LoadError const& e)
{
    return "error " + e.to_string();
}
[[nodiscard]] inline std::string describe(std::string const& e)
{
    return "error " + e;
}
[[nodiscard]] inline std::string describe(boost::system::error_code const& e)
{
    return "error " + e.to_string() + " (" + e.message() + ")";
}

}  // namespace exemptd::test

// Catch prints a fact with its kind, so that true and "true" read differently.
template <>
struct Catch::StringMaker<exemptd::FactValue> {
    static std::string convert(exemptd::FactValue const& v)
    {
        static char const* const kKinds[] = {"bool ", "int ", "real ", "string "};
        auto const text = exemptd::fact_to_string(v);
        return kKinds[v.index()] + (v.index() == 3 ? '"' + text + '"' : text);
    }
};

// Catch prints times as RFC 3339.
template <>
struct Catch::StringMaker<exemptd::TimePoint> {
    static std::string convert(exemptd::TimePoint const& t) { return exemptd::format_rfc3339(t); }
};

#if !defined(CATCH_CONFIG_ENABLE_OPTIONAL_STRINGMAKER)
// Catch prints optionals as their value or "nullopt".
template <class T>
struct Catch::StringMaker<std::optional<T>> {
    static std::string convert(std::optional<T> const& v)
    {
        return v ? Catch::Detail::stringify(*v) : std::string("nullopt");
    }
};
#endif

// Catch prints results through this instead of Boost's operator<<, which needs one for the value.
template <class T, class E>
struct Catch::StringMaker<boost::system::result<T, E>> {
    static std::string convert(boost::system::result<T, E> const& r)
    {
        return r.has_value() ? std::string("a result with a value") : exemptd::test::describe(r.error());
    }
};
