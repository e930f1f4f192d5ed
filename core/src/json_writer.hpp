#pragma once
// Writing JSON text straight into a string, for the documents written on every check-in (the
// decision, the facts, the failure streaks), where building a boost::json value first cost more
// than the writing. Private to the core library. The text is what boost::json::serialize writes
// for the same document: the same escapes, bytes >= 0x80 as they are.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace exemptd::json_writer {

// JSON text being written. It grows its string in large steps and writes through a pointer:
// std::string::append costs a call and a capacity check per piece, and a decision is a few
// hundred pieces.
class Text {
public:
    explicit Text(std::size_t expected_size) { buffer_.resize(expected_size); }

    void raw(std::string_view s)
    {
        if (s.empty()) return;  // an empty view's data() may be null, which memcpy must not get
        std::memcpy(room(s.size()), s.data(), s.size());
        size_ += s.size();
    }
    void raw(char c)
    {
        *room(1) = c;
        ++size_;
    }
    // Room for `n` more bytes at the end; write them, then add them with `added`.
    [[nodiscard]] char* room(std::size_t n)
    {
        if (buffer_.size() - size_ < n) grow(n);
        return buffer_.data() + size_;
    }
    void added(std::size_t n) { size_ += n; }
    // The last byte written; '\0' before the first.
    [[nodiscard]] char back() const { return size_ == 0 ? '\0' : buffer_[size_ - 1]; }

    [[nodiscard]] std::string take() &&
    {
        buffer_.resize(size_);
        return std::move(buffer_);
    }

private:
    void grow(std::size_t n);

    std::string buffer_;  // bytes past size_ are room, not text
    std::size_t size_ = 0;
};

// Appends `s` as a JSON string.
void append_string(Text& out, std::string_view s);

// Appends `,"key":` (without the comma right after `{` or `[`); `key` is escaped.
void append_key(Text& out, std::string_view key);

// A member name written as it is: a string literal, checked at compile time to need no escape.
// It holds its member's prefix, `"name":`, ready to copy in one fixed-size move: a decision
// writes about thirty members, and copying the name piece by piece was a third of that.
class Name {
public:
    static constexpr std::size_t kPrefixRoom = 32;  // `"name":` and the bytes after it, copied too

    template <std::size_t N>
    consteval Name(char const (&text)[N])  // NOLINT: implicit from a literal
    {
        static_assert(N + 2 <= kPrefixRoom, "a Name is at most 29 characters");
        prefix_[0] = '"';
        for (std::size_t i = 0; i + 1 < N; ++i) {
            char const c = text[i];
            if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) throw "a Name needs no escape";
            prefix_[i + 1] = c;
        }
        prefix_[N] = '"';
        prefix_[N + 1] = ':';
        size_ = N + 2;
    }
    [[nodiscard]] std::string_view text() const { return {prefix_ + 1, size_ - 3}; }
    // `"name":` at the front of kPrefixRoom bytes; prefix_size() of them count.
    [[nodiscard]] char const* padded_prefix() const { return prefix_; }
    [[nodiscard]] std::size_t prefix_size() const { return size_; }

private:
    char prefix_[kPrefixRoom]{};
    std::size_t size_ = 0;
};

// Appends `,"name":` (without the comma right after `{` or `[`) and the string value.
void append_member(Text& out, Name const& name, std::string_view value);

// Appends `,"name":` (without the comma right after `{` or `[`) and the integer.
void append_member(Text& out, Name const& name, std::int64_t value);

}  // namespace exemptd::json_writer
