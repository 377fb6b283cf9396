# Release a resource when every appraisal in the token affirms the workload: the
# attestation policy accepted its evidence.
package policy

default allow = false

allow if {
    count(input.submods) > 0
    every _, submod in input.submods {
        submod["ear.status"] == "affirming"
    }
}
