#include "file_util.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace exemptd::client {

ClientResult<std::string> read_file(std::filesystem::path const& path)
{
    errno = 0;
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        int const err = errno != 0 ? errno : ENOENT;
        return ClientError{boost::system::error_code(err, boost::system::system_category()),
                           "cannot read " + path.string() + ": " + std::strerror(err)};
    }
    std::ostringstream content;
    content << in.rdbuf();
    if (in.bad()) {
        int const err = errno != 0 ? errno : EIO;
        return ClientError{boost::system::error_code(err, boost::system::system_category()),
                           "cannot read " + path.string() + ": " + std::strerror(err)};
    }
    return std::move(content).str();
}

}  // namespace exemptd::client
