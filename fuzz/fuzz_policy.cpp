// Fuzz target: the policy YAML loader (parse_policy), with terms files resolved against
// policies/. Invariants: nothing throws; a refusal names the file and a reason; an accepted policy
// has unique control ids, only references that resolve, and the "sha256:" version.

#include "fuzz_support.hpp"

#include "exemptd/policy.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

namespace {

using exemptd::fuzz::fail;

// terms_file may name any path. Reading a device or a pseudo-file (/dev/zero, a FIFO under /run)
// could block or never end; that is the operator's file to choose, not a parser bug, so such
// inputs are skipped, with the YAML escapes that could spell such a path.
bool may_name_special_file(std::string_view text)
{
    for (std::string_view const word :
         {"/dev", "/proc", "/sys", "/run", "\\x", "\\u", "\\U", "\\/", "\\\n", "\\\r"}) {
        if (text.find(word) != std::string_view::npos) return true;
    }
    return false;
}

void check_accepted(exemptd::Policy const& policy)
{
    if (!policy.version.starts_with("sha256:") || policy.version.size() != 7 + 64) fail("a bad policy version");
    std::set<std::string, std::less<>> ids;
    for (auto const& control : policy.controls) {
        if (control.id.empty() || !ids.insert(control.id).second) fail("an empty or duplicate control id");
        if (policy.find_control(control.id) != &control) fail("find_control does not find " + control.id);
        if (!control.requires_agreement.empty() && !policy.agreements.contains(control.requires_agreement))
            fail("a dangling agreement template " + control.requires_agreement);
        if (control.check) (void)exemptd::describe_check(*control.check);
    }
    for (auto const& [name, t] : policy.agreements) {
        if (t.terms_sha256.size() != 64) fail("a template without a terms hash");
    }
    constexpr std::array kLevels{exemptd::RiskLevel::low, exemptd::RiskLevel::medium, exemptd::RiskLevel::high,
                                 exemptd::RiskLevel::critical};
    // The exemption rules look every level up with .at(), so an accepted policy must have them all.
    for (auto const level : kLevels) {
        if (!policy.exemptions.max_days.contains(level) || !policy.exemptions.review_every_days.contains(level))
            fail("an accepted policy without max_days or review_every_days for a level");
    }
    for (auto const& [level, approvers] : policy.exemptions.approvers) {
        for (auto const& approver : approvers) {
            // An approver listed for a level may approve it and every lower level.
            for (auto const lower : kLevels) {
                if (lower <= level && !policy.may_approve(approver, lower)) fail("may_approve misses a lower level");
            }
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    static std::string const base_dir = exemptd::fuzz::policies_dir();
    auto const text = exemptd::fuzz::as_text(data, size);
    if (may_name_special_file(text)) return -1;  // not added to the corpus
    auto const policy = exemptd::parse_policy(text, "fuzz.yaml", base_dir);
    if (policy) {
        check_accepted(*policy);
    } else if (policy.error().file != "fuzz.yaml" || policy.error().reason.empty() || policy.error().line < 0) {
        fail("a refusal without file or reason: " + policy.error().to_string());
    }
    return 0;
}
