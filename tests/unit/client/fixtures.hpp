#pragma once
// Helpers shared by the client unit tests: fixture files and scratch folders.

#include "client_error.hpp"
#include "file_util.hpp"

#include "exemptd/error.hpp"

#include <boost/system/result.hpp>
#include <catch2/catch.hpp>

#include <stdlib.h>

#include <cstdlib>

#include <filesystem>
#include <fstream>
#include <string>

namespace exemptd::client::test {

// The text of tests/unit/client/data/NAME; fails the test when it cannot be read.
inline std::string fixture(std::string const& name)
{
    auto text = read_file(std::filesystem::path(EXEMPTD_CLIENT_TEST_DATA) / name);
    REQUIRE(text);
    return *text;
}

// A fresh folder under the temporary directory, removed with everything in it at scope exit.
class ScratchDir {
public:
    ScratchDir()
    {
        std::string pattern = (std::filesystem::temp_directory_path() / "exemptd-client-test-XXXXXX").string();
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        path_ = pattern;
    }
    ~ScratchDir()
    {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    ScratchDir(ScratchDir const&) = delete;
    ScratchDir& operator=(ScratchDir const&) = delete;

    [[nodiscard]] std::filesystem::path const& path() const noexcept { return path_; }

    // Writes `text` to the relative path `name`, creating folders as needed; returns the full path.
    std::filesystem::path write(std::string const& name, std::string const& text) const
    {
        auto const file = path_ / name;
        std::filesystem::create_directories(file.parent_path());
        std::ofstream(file, std::ios::binary) << text;
        return file;
    }

    // Makes a self-signed client certificate NAME.crt (with NAME.key) through the openssl CLI,
    // with the given subjectAltName (e.g. "URI:urn:exemptd:role:endpoint,URI:urn:..."); returns the
    // certificate's path.
    std::filesystem::path make_certificate(std::string const& name, std::string const& san) const
    {
        auto const crt = path_ / (name + ".crt");
        auto const key = path_ / (name + ".key");
        std::string const command = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1"
                                    " -subj /CN=" + name + " -keyout '" + key.string() + "' -out '" + crt.string() +
                                    "' -addext 'subjectAltName=" + san + "' -addext extendedKeyUsage=clientAuth"
                                    " -addext basicConstraints=critical,CA:FALSE"
                                    " >/dev/null 2>&1";
        REQUIRE(std::system(command.c_str()) == 0);  // NOLINT(cert-env33-c): a fixed test command
        return crt;
    }

private:
    std::filesystem::path path_;
};

}  // namespace exemptd::client::test

namespace exemptd::client::test {

inline std::string describe(ClientError const& e) { return e.message; }
inline std::string describe(boost::system::error_code const& e) { return e.message(); }
inline std::string describe(exemptd::ApiError const& e) { return e.code + ": " + e.message; }

}  // namespace exemptd::client::test

// Failed checks on a result show its error instead of failing to compile (boost's result declares
// operator<< for every value type, streamable or not).
template <class T, class E>
struct Catch::StringMaker<boost::system::result<T, E>> {
    static std::string convert(boost::system::result<T, E> const& r)
    {
        return r ? std::string("a value") : "error: " + exemptd::client::test::describe(r.error());
    }
};
