#include "posture_collector.hpp"

#include "file_util.hpp"
#include "posture_parsers.hpp"

#include "exemptd/identity.hpp"

#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <initializer_list>
#include <memory>

namespace exemptd::client {
namespace {

namespace fs = std::filesystem;

std::optional<std::string> read_optional(fs::path const& path)
{
    auto text = read_file(path);
    if (!text) return std::nullopt;
    return std::move(*text);
}

// The first of `candidates` that is an executable file.
std::optional<std::string> find_program(std::initializer_list<char const*> candidates)
{
    for (char const* path : candidates)
        if (::access(path, X_OK) == 0) return std::string(path);
    return std::nullopt;
}

// Runs a fixed command line (never built from input) through /bin/sh and returns its standard
// output when it exits with status 0.
std::optional<std::string> run_command(std::string const& command)
{
    std::unique_ptr<FILE, decltype(&::pclose)> pipe{::popen(command.c_str(), "r"), &::pclose};
    if (!pipe) return std::nullopt;
    std::string output;
    std::array<char, 4096> chunk{};
    for (std::size_t n; (n = std::fread(chunk.data(), 1, chunk.size(), pipe.get())) > 0;)
        output.append(chunk.data(), n);
    int const status = ::pclose(pipe.release());
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::nullopt;
    return output;
}

// The st_rdev of the root file system: from mountinfo, or, for file systems with anonymous device
// numbers (btrfs), from the block device named as the mount's source.
std::optional<dev_t> root_device(MountEntry const& root)
{
    if (root.major != 0) return ::makedev(root.major, root.minor);
    struct stat st {};
    if (!root.source.starts_with("/dev/") || ::stat(root.source.c_str(), &st) != 0 || !S_ISBLK(st.st_mode))
        return std::nullopt;
    return st.st_rdev;
}

// Interprets a local wall-clock time in this machine's time zone.
TimePoint to_system_time(std::chrono::local_seconds local)
{
    auto const days = std::chrono::floor<std::chrono::days>(local);
    std::chrono::year_month_day const date{days};
    std::chrono::hh_mm_ss const time{local - days};
    std::tm tm{};
    tm.tm_year = static_cast<int>(date.year()) - 1900;
    tm.tm_mon = static_cast<int>(static_cast<unsigned>(date.month())) - 1;
    tm.tm_mday = static_cast<int>(static_cast<unsigned>(date.day()));
    tm.tm_hour = static_cast<int>(time.hours().count());
    tm.tm_min = static_cast<int>(time.minutes().count());
    tm.tm_sec = static_cast<int>(time.seconds().count());
    tm.tm_isdst = -1;
    return TimePoint{std::chrono::seconds{std::mktime(&tm)}};
}

std::optional<TimePoint> modification_time(fs::path const& path)
{
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return std::nullopt;
    return TimePoint{std::chrono::seconds{st.st_mtim.tv_sec}};
}

std::optional<TimePoint> last_package_upgrade()
{
    for (char const* log : {"/var/log/dpkg.log", "/var/log/dpkg.log.1"}) {
        auto const text = read_optional(log);
        if (!text) continue;
        if (auto const local = last_dpkg_upgrade(*text)) return to_system_time(*local);
    }
    return std::nullopt;
}

std::string read_hostname()
{
    std::array<char, 256> name{};
    if (::gethostname(name.data(), name.size() - 1) != 0) return {};
    return name.data();
}

OsRelease read_os_release()
{
    for (char const* path : {"/etc/os-release", "/usr/lib/os-release"})
        if (auto const text = read_optional(path)) return parse_os_release(*text);
    return {};
}

}  // namespace

std::optional<bool> detect_disk_encryption()
{
    auto const mountinfo = read_optional("/proc/self/mountinfo");
    if (!mountinfo) return std::nullopt;
    auto const root = find_root_mount(*mountinfo);
    if (!root) return std::nullopt;
    auto const device = root_device(*root);
    if (!device) return std::nullopt;
    auto const dir = "/sys/dev/block/" + std::to_string(::major(*device)) + ":" + std::to_string(::minor(*device));
    return is_dm_crypt_backed(dir);
}

std::optional<bool> detect_firewall()
{
    std::optional<bool> filters;
    auto const nft = find_program({"/usr/sbin/nft", "/sbin/nft"});
    if (nft) {
        if (auto const ruleset = run_command(*nft + " list ruleset 2>/dev/null"))
            filters = nft_ruleset_filters_input(*ruleset);
    }
    // Rules of the legacy iptables backend are invisible to nft; its loaded tables are listed here.
    auto const legacy_tables = read_optional("/proc/net/ip_tables_names").value_or("");
    auto const save = !legacy_tables.empty()
                          ? find_program({"/usr/sbin/iptables-legacy-save", "/sbin/iptables-legacy-save"})
                          : (nft ? std::nullopt : find_program({"/usr/sbin/iptables-save", "/sbin/iptables-save"}));
    if (save) {
        if (auto const saved = run_command(*save + " -t filter 2>/dev/null"))
            filters = filters.value_or(false) || iptables_save_filters_input(*saved);
    }
    return filters;
}

std::optional<std::int64_t> detect_screen_lock()
{
    // As root (a system service) gsettings would answer root's defaults, not the user's.
    auto const gsettings = find_program({"/usr/bin/gsettings", "/bin/gsettings"});
    if (::geteuid() == 0 || !gsettings) return std::nullopt;
    // stderr is kept: with the in-memory backend gsettings warns there and answers mere defaults,
    // which the strict parsers below then refuse.
    auto const get = [&gsettings](char const* schema_key) {
        return run_command(*gsettings + " get " + schema_key + " 2>&1").value_or("");
    };
    return screen_lock_after(parse_gsettings_uint(get("org.gnome.desktop.session idle-delay")),
                             parse_gsettings_bool(get("org.gnome.desktop.screensaver lock-enabled")),
                             parse_gsettings_uint(get("org.gnome.desktop.screensaver lock-delay")));
}

std::optional<std::int64_t> detect_patch_age(TimePoint now)
{
    auto last = last_package_upgrade();
    if (!last) last = modification_time("/var/lib/apt/periodic/update-success-stamp");
    if (!last) last = modification_time("/var/lib/apt/lists");
    if (!last) return std::nullopt;
    return patch_age_days(*last, now);
}

ClientResult<std::string> random_nonce()
{
    std::array<unsigned char, 16> bytes{};
    if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1)
        return client_error("cannot make a random nonce: OpenSSL's RAND_bytes failed");
    constexpr std::string_view kHex = "0123456789abcdef";
    std::string out;
    for (unsigned char const b : bytes) {
        out += kHex[b >> 4];
        out += kHex[b & 0x0f];
    }
    return out;
}

ClientResult<std::string> device_id_from_certificate(std::string const& cert_path)
{
    auto const pem = read_file(cert_path);
    if (!pem) return pem.error();
    std::unique_ptr<BIO, decltype(&BIO_free)> bio{BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())),
                                                  &BIO_free};
    std::unique_ptr<X509, decltype(&X509_free)> cert{PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr),
                                                     &X509_free};
    if (!cert) return client_error("cannot read certificate " + cert_path + ": not a PEM certificate");
    auto const id = identity_from_certificate(cert.get());
    if (!id || id->role != Role::endpoint)
        return client_error("certificate " + cert_path +
                            " is not an endpoint certificate with one urn:exemptd:device: URI; pass --device-id");
    return id->device_id;
}

ClientResult<PostureReport> collect_posture(std::string const& device_id, TimePoint now)
{
    PostureReport report;
    report.device_id = device_id;
    report.hostname = read_hostname();
    report.serial = clean_serial(read_optional("/sys/class/dmi/id/product_serial").value_or("")).value_or("");
    auto const os = read_os_release();
    report.os_name = os.id;
    report.os_version = os.version_id;
    if (auto const v = detect_disk_encryption()) report.facts["disk_encrypted"] = *v;
    if (auto const v = detect_firewall()) report.facts["firewall_enabled"] = *v;
    if (auto const v = detect_screen_lock()) report.facts["screen_lock_seconds"] = *v;
    if (auto const v = detect_patch_age(now)) report.facts["os_patch_age_days"] = *v;
    report.agent_version = kAgentVersion;
    report.reported_at = now;
    auto nonce = random_nonce();
    if (!nonce) return nonce.error();
    report.nonce = std::move(*nonce);
    return report;
}

}  // namespace exemptd::client
