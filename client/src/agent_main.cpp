// exempt-agent: reports this endpoint's posture to exemptd and prints the decision (SPEC §9).
#include "agent_app.hpp"
#include "connection_settings.hpp"

#include <exception>
#include <iostream>

int main(int argc, char** argv)
{
    try {
        return exemptd::client::run_exempt_agent(argc, argv, std::cout, std::cerr,
                                                 exemptd::client::process_environment());
    } catch (std::exception const& e) {
        std::cerr << "exempt-agent: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "exempt-agent: unexpected error\n";
    }
    return 2;
}
