// A main for builds without libFuzzer: runs LLVMFuzzerTestOneInput once on every file in the
// folders (recursively) and files named on the command line, so that ctest replays each target's
// seed corpus. Exit 0 when every input ran, 1 when there was nothing to run or a path is
// unreadable; a broken invariant aborts, as it does under libFuzzer.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size);

namespace {

bool read_file(std::filesystem::path const& path, std::vector<std::uint8_t>& out)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) return false;
    out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return !in.bad();
}

// The files to replay, in a stable order.
bool collect(std::filesystem::path const& path, std::vector<std::filesystem::path>& files)
{
    std::error_code ec;
    if (std::filesystem::is_regular_file(path, ec)) {
        files.push_back(path);
        return true;
    }
    if (!std::filesystem::is_directory(path, ec)) return false;
    std::vector<std::filesystem::path> found;
    for (auto const& entry : std::filesystem::recursive_directory_iterator(path, ec)) {
        if (entry.is_regular_file()) found.push_back(entry.path());
    }
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
    return !ec;
}

}  // namespace

int main(int argc, char** argv)
{
    std::vector<std::filesystem::path> files;
    for (int i = 1; i < argc; ++i) {
        if (!collect(argv[i], files)) {
            std::fprintf(stderr, "replay: cannot read %s\n", argv[i]);
            return 1;
        }
    }
    if (files.empty()) {
        std::fprintf(stderr, "usage: %s DIR|FILE... (no inputs found)\n", argc > 0 ? argv[0] : "replay");
        return 1;
    }
    std::vector<std::uint8_t> input;
    for (auto const& file : files) {
        if (!read_file(file, input)) {
            std::fprintf(stderr, "replay: cannot read %s\n", file.c_str());
            return 1;
        }
        // An empty vector's data() may be null; libFuzzer passes a valid pointer even for size 0.
        std::uint8_t const none = 0;
        LLVMFuzzerTestOneInput(input.empty() ? &none : input.data(), input.size());
    }
    std::printf("replay: %zu inputs ran\n", files.size());
    return 0;
}
