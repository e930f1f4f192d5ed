#pragma once
// The API: a synchronous function from (caller, request) to response. It never touches sockets,
// so it is unit-tested without a network.

#include "exemptd/agreement.hpp"
#include "exemptd/checkpoint.hpp"
#include "exemptd/exemption_rules.hpp"
#include "exemptd/identity.hpp"
#include "exemptd/policy.hpp"
#include "exemptd/store.hpp"
#include "exemptd/time.hpp"
#include "checkin_limiter.hpp"
#include "http_types.hpp"
#include "metrics.hpp"
#include "routes.hpp"

#include <atomic>
#include <functional>
#include <memory>
#include <optional>

namespace exemptd::daemon {

class Router {
public:
    // `store` and `metrics` must outlive the router.
    Router(std::shared_ptr<Policy const> policy, Store& store, Metrics& metrics, Clock clock = system_now);
    Router(Router const&) = delete;
    Router& operator=(Router const&) = delete;

    // Resolves a request line and decides from it alone whether the caller may make the request:
    // the route to serve, or the refusal (400, 403, 404, 405) to send without reading the body.
    // Thread-safe.
    [[nodiscard]] boost::system::result<Route, ApiError> admit(ClientId const& client, std::string_view method,
                                                               std::string_view target) const;

    // Answers an admitted request. Never throws; every failure is an error response. Thread-safe.
    [[nodiscard]] HttpResponse handle(ClientId const& client, Route const& route, std::string const& body) const;

    // As above, with the request's Content-Type header (which the bulk import checks).
    // Thread-safe.
    [[nodiscard]] HttpResponse handle(ClientId const& client, Route const& route, std::string const& body,
                                      std::string_view content_type) const;

    // Serves an admitted POST /v1/checkin without waiting for the database: `done` receives the
    // decision or the refusal, at once for a refusal made before the store, else from the store's
    // commit thread (it must not block). Thread-safe.
    void check_in_async(ClientId const& client, std::string const& body, CheckinDone done) const;

    // The answer to a check-in whose outcome check_in_async gave (a decision's JSON comes
    // encoded by the store); counts it in the metrics. Thread-safe.
    [[nodiscard]] HttpResponse checkin_response(ApiResult<EncodedDecision> outcome) const;

    // admit() then handle(), for callers that hold the whole request. Thread-safe.
    [[nodiscard]] HttpResponse handle(ClientId const& client, HttpRequest const& request) const;

    // The largest request body the route may carry: `fallback` (the configured max_body_bytes)
    // for every route but the bulk import, which takes kMaxImportBytes. Thread-safe.
    [[nodiscard]] static std::size_t body_limit(Action action, std::size_t fallback) noexcept;

    // The largest body limit of any route, for reading headers before the route is known.
    // Thread-safe.
    [[nodiscard]] static std::size_t largest_body_limit(std::size_t fallback) noexcept;

    // Sets how many check-ins one device may make per minute (0: no limit; the default). Over
    // the limit, POST /v1/checkin is refused at admit() with 429 rate_limited and a Retry-After,
    // before its body is read, so nothing is written. Thread-safe.
    void set_checkin_rate(int per_minute);

    // Replaces the agreement verifier (CA and CRL) used by later uploads; without one, uploads
    // answer 503. Thread-safe.
    void set_agreement_verifier(std::shared_ptr<AgreementVerifier const> verifier);

    // Re-checks every stored, still valid agreement against the current verifier and
    // invalidates (with its exemptions' cover) each whose signer is now revoked. Returns how many
    // were invalidated. Thread-safe.
    [[nodiscard]] Result<int> revalidate_agreements() const;

    // Makes /v1/audit/verify also check the chain against the latest checkpoint in `file`, whose
    // signature must verify with `key`. Call before serving; not thread-safe.
    void set_checkpoints(std::string file, std::shared_ptr<EVP_PKEY> key);

    // Compares the audit trail's head with the latest checkpoint (cheap: no full chain walk);
    // the problem found, or nullopt. Thread-safe.
    [[nodiscard]] Result<std::optional<std::string>> checkpoint_problem() const;

    // Replaces the policy used by requests that start after the call. Thread-safe.
    void set_policy(std::shared_ptr<Policy const> policy);

    // The policy in force. Thread-safe.
    [[nodiscard]] std::shared_ptr<Policy const> policy() const;

    // The decision function for the policy in force at `now`, as the store calls it: a failing
    // control is covered only by an exemption that the evaluator accepts and, for a control that
    // requires an agreement, whose agreement binding holds. Thread-safe.
    [[nodiscard]] Evaluate evaluator(TimePoint now) const;

    // Expires due exemptions and flags overdue reviews (the sweeper). Thread-safe.
    [[nodiscard]] Result<SweepResult> sweep() const;

private:
    [[nodiscard]] HttpResponse dispatch(ClientId const& client, Route const& route, std::string const& body,
                                        std::string_view content_type) const;
    [[nodiscard]] HttpResponse checkin(ClientId const& client, std::string const& body) const;
    [[nodiscard]] HttpResponse device_decision(std::string const& device_id) const;
    [[nodiscard]] HttpResponse device_show(std::string const& device_id) const;
    [[nodiscard]] HttpResponse device_list(std::string_view query) const;
    [[nodiscard]] HttpResponse put_enrollment(ClientId const& client, std::string const& device_id,
                                              std::string const& body) const;
    // The check that an exemption's agreement backs a control, against the stored agreement and
    // the registry's owner.
    [[nodiscard]] AgreementCheck agreement_binding() const;
    [[nodiscard]] HttpResponse agreement_upload(ClientId const& client, std::string const& body) const;
    [[nodiscard]] HttpResponse agreement_show(std::string const& id) const;
    [[nodiscard]] HttpResponse device_explain(std::string const& device_id, std::string_view query) const;
    [[nodiscard]] HttpResponse audit_list(std::string_view query) const;
    [[nodiscard]] HttpResponse audit_verify() const;
    [[nodiscard]] Result<std::optional<std::string>> checkpoint_problem(Checkpoint const& checkpoint,
                                                                        std::int64_t last_seq) const;
    [[nodiscard]] HttpResponse exemption_request(ClientId const& client, std::string const& body) const;
    [[nodiscard]] HttpResponse exemption_list(std::string_view query) const;
    [[nodiscard]] HttpResponse exemption_show(std::string const& id) const;
    [[nodiscard]] HttpResponse exemption_change(ClientId const& client, std::string const& id, std::string_view verb,
                                                std::string const& body) const;
    [[nodiscard]] HttpResponse device_import(ClientId const& client, std::string_view content_type,
                                             std::string const& body) const;

    std::atomic<std::shared_ptr<Policy const>> policy_;
    std::atomic<std::shared_ptr<AgreementVerifier const>> verifier_;
    std::string checkpoint_file_;
    std::shared_ptr<EVP_PKEY> checkpoint_key_;
    Store& store_;
    Metrics& metrics_;
    Clock clock_;
    mutable CheckinLimiter checkin_limiter_;
};

// An API error as its HTTP response (SPEC §4 error body).
[[nodiscard]] HttpResponse error_response(ApiError const& error);

}  // namespace exemptd::daemon
