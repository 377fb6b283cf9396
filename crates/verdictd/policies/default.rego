# Release a resource to any attested workload except the software TEEs (sample and
# Inclavare's sim), whose evidence proves nothing about hardware.
package policy

default allow = false

evidence := input.submods.cpu0["ear.veraison.annotated-evidence"]

allow if {
    data.plugin == "resource"
    not evidence.sample
    not evidence.sim
}
