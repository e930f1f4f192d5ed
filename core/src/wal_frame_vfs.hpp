#pragma once
// A SQLite VFS that appends each WAL frame with one write instead of two (wal_frame_vfs.cpp).

#include <cstdint>

namespace exemptd::sqlite {

// The VFS's name for sqlite3_open_v2, registered on the first call; nullptr (SQLite's default
// VFS) if it could not be registered.
char const* wal_frame_vfs() noexcept;

// How many frames the VFS has written with one write, in this process (for tests).
std::uint64_t wal_frames_joined() noexcept;

}  // namespace exemptd::sqlite
