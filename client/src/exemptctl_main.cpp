// exemptctl: the admin and help desk command line for exemptd (SPEC §9).
#include "connection_settings.hpp"
#include "exemptctl_app.hpp"

#include <exception>
#include <iostream>

int main(int argc, char** argv)
{
    try {
        return exemptd::client::run_exemptctl(argc, argv, std::cout, std::cerr,
                                               exemptd::client::process_environment());
    } catch (std::exception const& e) {
        std::cerr << "exemptctl: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "exemptctl: unexpected error\n";
    }
    return 2;
}
