// vmlet's entry point: the one place that names real implementations and
// wires them together.
#include <exception>
#include <iostream>

#include "controller/cli.h"

int main(int argc, char** argv) {
  try {
    return vmlet::controller::RunCli(argc, argv, std::cout, std::cerr);
  } catch (const std::exception& e) {
    std::cerr << "vmlet: fatal: " << e.what() << "\n";
    return 70;  // EX_SOFTWARE
  }
}
