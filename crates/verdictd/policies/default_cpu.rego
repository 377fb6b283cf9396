# verdictd's default attestation (EAR) policy for CPU evidence.
#
# It follows Trustee's default_cpu policy (attestation-service's
# ear_default_policy_cpu.rego): an AR4SI trust vector from the claims in Trustee's
# layout and the registered reference values (query_reference_value). Without
# reference values, executables stays 33, hardware 97 and configuration 36, so the
# token is contraindicated.
package policy

import rego.v1

default executables := 33

default hardware := 97

default configuration := 36

trust_claims := {
	"executables": executables,
	"hardware": hardware,
	"configuration": configuration,
	"file-system": 0,
	"instance-identity": 0,
	"runtime-opaque": 0,
	"storage-opaque": 0,
	"sourced-data": 0,
}

# sample: a test TEE with fixed claims.
executables := 3 if {
	input.sample
	input.sample.launch_digest in query_reference_value("launch_digest")
}

hardware := 2 if {
	input.sample
	input.sample.svn in query_reference_value("svn")
	input.sample.platform_version.major == query_reference_value("major_version")
	input.sample.platform_version.minor >= query_reference_value("minimum_minor_version")
}

configuration := 2 if {
	input.sample
	input.sample.debug == false
}

# snp
executables := 3 if {
	input.snp
	input.snp.measurement in query_reference_value("snp_launch_measurement")
}

hardware := 2 if {
	input.snp
	input.snp.reported_tcb_bootloader in query_reference_value("snp_bootloader")
	input.snp.reported_tcb_microcode in query_reference_value("snp_microcode")
	input.snp.reported_tcb_snp in query_reference_value("snp_snp_svn")
	input.snp.reported_tcb_tee in query_reference_value("snp_tee_svn")
}

configuration := 2 if {
	input.snp
	snp_safe
	input.snp.platform_smt_enabled == query_reference_value("snp_smt_enabled")
	input.snp.platform_tsme_enabled == query_reference_value("snp_tsme_enabled")
	input.snp.policy_abi_major == query_reference_value("snp_guest_abi_major")
	input.snp.policy_abi_minor == query_reference_value("snp_guest_abi_minor")
	input.snp.policy_single_socket == query_reference_value("snp_single_socket")
	input.snp.policy_smt_allowed == query_reference_value("snp_smt_allowed")
} else := 3 if {
	input.snp
	snp_safe
}

snp_safe if {
	input.snp.policy_debug_allowed == false
	input.snp.policy_migrate_ma == false
}

# tdx (verdictd has no event log, so the RTMRs alone: Trustee's 4)
executables := 4 if {
	input.tdx
	input.tdx.quote.body.rtmr_1 in query_reference_value("rtmr_1")
	input.tdx.quote.body.rtmr_2 in query_reference_value("rtmr_2")
}

hardware := 2 if {
	input.tdx
	input.tdx.quote.header.tee_type == "81000000"
	input.tdx.quote.header.vendor_id == "939a7233f79c4ca9940a0db3957f0607"
	input.tdx.quote.body.mr_td in query_reference_value("mr_td")
	input.tdx.tcb_status == "UpToDate"
	input.tdx.collateral_expiration_status == "0"
}

configuration := 2 if {
	input.tdx
	input.tdx.td_attributes.debug == false
	input.tdx.quote.body.xfam in query_reference_value("xfam")
}

# sgx (Trustee's default policy has no SGX rules; these follow the same pattern)
executables := 3 if {
	input.sgx
	input.sgx.body.mr_enclave in query_reference_value("mr_enclave")
	input.sgx.body.mr_signer in query_reference_value("mr_signer")
}

hardware := 2 if {
	input.sgx
	input.sgx.tcb_status == "UpToDate"
	input.sgx.collateral_expiration_status == "0"
}

configuration := 2 if {
	input.sgx
	input.sgx.debug == false
}

# sim (Inclavare's software enclave; not in Trustee): its measurement can be a
# provisioned reference value (`shelter rv bundle`), but sim proves nothing about
# hardware, so hardware stays 97 and the token contraindicated.
executables := 3 if {
	input.sim
	input.sim.sim_mr_enclave in query_reference_value("sim_mr_enclave")
}

# Extensions (as Trustee's default_cpu): ear.trustee.identifiers (key -18) names the
# workload from the Kata agent policy carried in the init-data
# (init_data_claims.agent_policy_claims): the containers' image names and UIDs, each
# list present only when not empty.
extensions := [{
	"name": "ear.trustee.identifiers",
	"key": -18,
	"value": {"validated": object.union_n([images_identifier, uids_identifier])},
}]

policy_containers := input.init_data_claims.agent_policy_claims.containers

images := [name |
	some c in policy_containers
	name := c.OCI.Annotations["io.kubernetes.cri.image-name"]
]

uids := [uid |
	some c in policy_containers
	uid := c.OCI.Process.User.UID
]

images_identifier := {"container_images": images} if {
	count(images) > 0
} else := {}

uids_identifier := {"container_uids": uids} if {
	count(uids) > 0
} else := {}
