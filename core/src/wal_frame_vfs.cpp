#include "wal_frame_vfs.hpp"

#include <sqlite3.h>

#include <atomic>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <new>
#include <type_traits>
#include <vector>

// SQLite appends a frame to the WAL with two writes: the frame's 24-byte header, then its page
// at the next offset. A check-in's commit appends a frame or two, and each write is a system
// call (about 1.6 µs here, for 24 bytes as for 4,096). This VFS holds a WAL's frame header back
// and writes it with its page, from one buffer: the same bytes at the same offsets in the same
// order, so a frame torn by a crash is caught by the WAL's checksums exactly as before. Any
// other call on the file writes a held header first. Files other than WALs are the default
// VFS's own, untouched.

namespace exemptd::sqlite {
namespace {

constexpr int kFrameHeaderBytes = 24;  // WAL_FRAME_HDRSIZE in SQLite's wal.c

sqlite3_vfs* default_vfs = nullptr;  // the VFS this one delegates to
std::atomic<std::uint64_t> frames_joined{0};

struct WalFile {
    sqlite3_file file;                 // what SQLite sees: pMethods is wal_methods
    sqlite3_file* base = nullptr;      // the default VFS's file, after this struct in one allocation
    sqlite3_int64 held_at = -1;        // the offset of the held frame header; -1: none held
    std::vector<unsigned char> frame;  // the held header, then room for its page
};
// SQLite hands methods the sqlite3_file; the WalFile around it is found by a cast.
static_assert(std::is_standard_layout_v<WalFile> && offsetof(WalFile, file) == 0);

constexpr int kBaseOffset = static_cast<int>((sizeof(WalFile) + alignof(std::max_align_t) - 1) /
                                             alignof(std::max_align_t) * alignof(std::max_align_t));

WalFile& wal(sqlite3_file* file)
{
    return *reinterpret_cast<WalFile*>(file);
}

// Writes the held header, if any, alone.
int write_held(WalFile& w)
{
    if (w.held_at < 0) return SQLITE_OK;
    auto const at = w.held_at;
    w.held_at = -1;
    return w.base->pMethods->xWrite(w.base, w.frame.data(), kFrameHeaderBytes, at);
}

int wal_write(sqlite3_file* file, void const* data, int amount, sqlite3_int64 offset)
{
    auto& w = wal(file);
    if (w.held_at >= 0 && offset == w.held_at + kFrameHeaderBytes) {
        try {
            auto const size = static_cast<std::size_t>(kFrameHeaderBytes + amount);
            if (w.frame.size() < size) w.frame.resize(size);
            std::memcpy(w.frame.data() + kFrameHeaderBytes, data, static_cast<std::size_t>(amount));
            w.held_at = -1;
            frames_joined.fetch_add(1, std::memory_order_relaxed);
            return w.base->pMethods->xWrite(w.base, w.frame.data(), static_cast<int>(size),
                                            offset - kFrameHeaderBytes);
        } catch (std::bad_alloc const&) {  // no room to join them: two writes, as without this VFS
        }
    }
    if (int const rc = write_held(w); rc != SQLITE_OK) return rc;
    if (amount == kFrameHeaderBytes && w.frame.size() >= kFrameHeaderBytes) {
        std::memcpy(w.frame.data(), data, kFrameHeaderBytes);
        w.held_at = offset;
        return SQLITE_OK;
    }
    return w.base->pMethods->xWrite(w.base, data, amount, offset);
}

int wal_close(sqlite3_file* file)
{
    auto& w = wal(file);
    int const held = write_held(w);
    int const closed = w.base->pMethods->xClose(w.base);
    w.~WalFile();
    return held != SQLITE_OK ? held : closed;
}

// A call that reads, sizes, syncs, truncates, locks or maps the file writes a held header
// first; it then is the default VFS's, as are the calls that only ask about the file.
template <auto Method, typename... Args>
int after_held(sqlite3_file* file, Args... args)
{
    auto& w = wal(file);
    if (int const rc = write_held(w); rc != SQLITE_OK) return rc;
    return (w.base->pMethods->*Method)(w.base, args...);
}

template <auto Method, typename... Args>
auto base(sqlite3_file* file, Args... args)
{
    auto& w = wal(file);
    return (w.base->pMethods->*Method)(w.base, args...);
}

using Methods = sqlite3_io_methods;

sqlite3_io_methods const wal_methods = {
    3,
    wal_close,
    [](sqlite3_file* f, void* data, int amount, sqlite3_int64 at) { return after_held<&Methods::xRead>(f, data, amount, at); },
    wal_write,
    [](sqlite3_file* f, sqlite3_int64 size) { return after_held<&Methods::xTruncate>(f, size); },
    [](sqlite3_file* f, int flags) { return after_held<&Methods::xSync>(f, flags); },
    [](sqlite3_file* f, sqlite3_int64* size) { return after_held<&Methods::xFileSize>(f, size); },
    [](sqlite3_file* f, int lock) { return after_held<&Methods::xLock>(f, lock); },
    [](sqlite3_file* f, int lock) { return after_held<&Methods::xUnlock>(f, lock); },
    [](sqlite3_file* f, int* out) { return base<&Methods::xCheckReservedLock>(f, out); },
    [](sqlite3_file* f, int op, void* arg) { return after_held<&Methods::xFileControl>(f, op, arg); },
    [](sqlite3_file* f) { return base<&Methods::xSectorSize>(f); },
    [](sqlite3_file* f) { return base<&Methods::xDeviceCharacteristics>(f); },
    [](sqlite3_file* f, int region, int size, int extend, void volatile** out) {
        return after_held<&Methods::xShmMap>(f, region, size, extend, out);
    },
    [](sqlite3_file* f, int offset, int n, int flags) { return after_held<&Methods::xShmLock>(f, offset, n, flags); },
    [](sqlite3_file* f) { base<&Methods::xShmBarrier>(f); },
    [](sqlite3_file* f, int delete_flag) { return after_held<&Methods::xShmUnmap>(f, delete_flag); },
    [](sqlite3_file* f, sqlite3_int64 at, int amount, void** out) { return after_held<&Methods::xFetch>(f, at, amount, out); },
    [](sqlite3_file* f, sqlite3_int64 at, void* p) { return after_held<&Methods::xUnfetch>(f, at, p); },
};

int open_file(sqlite3_vfs*, char const* name, sqlite3_file* file, int flags, int* out_flags)
{
    if ((flags & SQLITE_OPEN_WAL) == 0) return default_vfs->xOpen(default_vfs, name, file, flags, out_flags);
    auto* w = new (file) WalFile{};
    w->base = reinterpret_cast<sqlite3_file*>(reinterpret_cast<unsigned char*>(file) + kBaseOffset);
    w->base->pMethods = nullptr;
    int rc = default_vfs->xOpen(default_vfs, name, w->base, flags, out_flags);
    if (rc == SQLITE_OK && w->base->pMethods->iVersion < wal_methods.iVersion) rc = SQLITE_CANTOPEN;
    if (rc == SQLITE_OK) {
        try {
            w->frame.resize(kFrameHeaderBytes + 4096);  // the default page; a larger one grows it
        } catch (std::bad_alloc const&) {  // frames are then written as without this VFS
        }
        w->file.pMethods = &wal_methods;
        return SQLITE_OK;
    }
    if (w->base->pMethods != nullptr) w->base->pMethods->xClose(w->base);
    w->~WalFile();
    file->pMethods = nullptr;  // SQLite does not close a file that failed to open
    return rc;
}

}  // namespace

char const* wal_frame_vfs() noexcept
{
    static sqlite3_vfs vfs{};
    static std::once_flag once;
    static bool registered = false;
    std::call_once(once, [] {
        default_vfs = sqlite3_vfs_find(nullptr);
        if (default_vfs == nullptr) return;
        vfs = *default_vfs;  // its other methods do not depend on which VFS object they are called with
        vfs.pNext = nullptr;
        vfs.zName = "exemptd-wal-frames";
        vfs.szOsFile = kBaseOffset + default_vfs->szOsFile;
        vfs.xOpen = open_file;
        registered = sqlite3_vfs_register(&vfs, 0) == SQLITE_OK;
    });
    return registered ? vfs.zName : nullptr;
}

std::uint64_t wal_frames_joined() noexcept
{
    return frames_joined.load(std::memory_order_relaxed);
}

}  // namespace exemptd::sqlite
