#include "yaml_util.hpp"

#include <algorithm>
#include <charconv>

namespace exemptd::yaml {

int line_of(YAML::Node const& node)
{
    return node.Mark().is_null() ? 0 : node.Mark().line + 1;
}

void refuse(YAML::Node const& node, std::string reason)
{
    throw Refusal{line_of(node), std::move(reason)};
}

void expect_keys(YAML::Node const& map, std::string_view what, std::initializer_list<std::string_view> known)
{
    if (!map.IsMap()) refuse(map, std::string(what) + " must be a mapping");
    for (auto const& entry : map) {
        auto const key = entry.first.Scalar();
        if (std::find(known.begin(), known.end(), key) == known.end())
            refuse(entry.first, "unknown key '" + key + "' in " + std::string(what));
    }
}

std::string scalar(YAML::Node const& node, std::string_view what)
{
    if (!node.IsScalar()) refuse(node, std::string(what) + " must be a single value");
    return node.Scalar();
}

long long integer(YAML::Node const& node, std::string_view what, long long lo, long long hi)
{
    auto const text = scalar(node, what);
    long long value = 0;
    auto const [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || value < lo || value > hi)
        refuse(node, std::string(what) + " must be a whole number from " + std::to_string(lo) + " to " +
                         std::to_string(hi));
    return value;
}

}  // namespace exemptd::yaml
