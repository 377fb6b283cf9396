# Release a resource to any attested workload except the software TEEs (sample and
# Inclavare's sim), whose evidence proves nothing about hardware, and except an SGX
# enclave the measurement gate refused (`[rvps] require_reference_values`: its
# mr_enclave is no provisioned reference value, so its executables claim is 96).
package policy

default allow = false

evidence := input.submods.cpu0["ear.veraison.annotated-evidence"]

allow if {
    data.plugin == "resource"
    not evidence.sample
    not evidence.sim
    not unmeasured_sgx
}

unmeasured_sgx if {
    evidence.sgx
    input.submods.cpu0["ear.trustworthiness-vector"].executables == 96
}
