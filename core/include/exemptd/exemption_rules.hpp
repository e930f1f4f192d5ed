#pragma once
// The rules of the exemption life cycle (SPEC §6) as pure functions: each takes the current
// exemption and answers the next one or the rule it breaks. The store applies them inside a
// transaction, so two racing transitions cannot both succeed.

#include "exemptd/exemption.hpp"

#include <functional>

namespace exemptd {

// Checks that an exemption's agreement backs `template_name` for its subject; answers the
// refusal (422) or nullopt. Supplied by the caller, which knows the stored agreements.
using AgreementCheck = std::function<std::optional<ApiError>(Exemption const&, std::string const& template_name)>;

// Builds a pending exemption from a POST /v1/exemptions body. 400 for a body that does not parse
// or has wrong types; 422 for an unknown control, a control of another subject kind, a
// compensating control that cannot be checked on a device, or an expiry that is missing, not in
// the future, or beyond max_days for the derived risk level.
[[nodiscard]] ApiResult<Exemption> request_exemption(Policy const& policy, std::string_view body,
                                                     std::string const& requester, TimePoint now);

// pending -> active. 409 when not pending (or already expired); 422 when the approver is the
// requester, is not listed for the risk level or a higher one, or a control needs an agreement
// that `agreement_check` refuses.
[[nodiscard]] ApiResult<Exemption> approve_exemption(Policy const& policy, Exemption e, std::string const& approver,
                                                     std::string const& note, TimePoint now,
                                                     AgreementCheck const& agreement_check);

// pending -> rejected, by someone who could have approved it.
[[nodiscard]] ApiResult<Exemption> reject_exemption(Policy const& policy, Exemption e, std::string const& actor,
                                                    std::string const& note, TimePoint now);

// Extends an active exemption; the new expiry must be later than the current one and within
// max_days of now; at most max_renewals times; by someone with approval authority for the level.
[[nodiscard]] ApiResult<Exemption> renew_exemption(Policy const& policy, Exemption e, std::string const& actor,
                                                   std::optional<TimePoint> expires_at, std::string const& note,
                                                   TimePoint now);

// Records a review of an active exemption and moves next_review_at by review_every_days.
[[nodiscard]] ApiResult<Exemption> review_exemption(Policy const& policy, Exemption e, std::string const& actor,
                                                    std::string const& note, TimePoint now);

// pending or active -> revoked; the reason is required.
[[nodiscard]] ApiResult<Exemption> revoke_exemption(Exemption e, std::string const& actor, std::string const& reason,
                                                    TimePoint now);

}  // namespace exemptd
