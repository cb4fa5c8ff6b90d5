"""The Table columns kube-apiserver v1.20 sends for each kind the simulator serves, recorded from the real
apiserver (``tests/fixtures/kube/table_columns.json``) with their descriptions, so a Table reads the same."""

from __future__ import annotations

NAME = ("Name must be unique within a namespace. Is required when creating resources, although some resources may "
        "allow a client to request the generation of an appropriate name automatically. Name is primarily intended "
        "for creation idempotence and configuration definition. Cannot be updated. More info: "
        "http://kubernetes.io/docs/user-guide/identifiers#names")
AGE = ("CreationTimestamp is a timestamp representing the server time when this object was created. It is not "
       "guaranteed to be set in happens-before order across separate operations. Clients may not set this value. "
       "It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. "
       "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata")


def _column(name: str, type_: str, description: str, priority: int = 0, format_: str = "") -> dict:
    return {"name": name, "type": type_, "format": format_, "description": description, "priority": priority}


_NAME, _AGE = _column("Name", "string", NAME, format_="name"), _column("Age", "string", AGE)
COLUMNS = {
    "Deployment": [
        _NAME,
        _column("Ready", "string", "Number of the pod with ready state"),
        _column("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have "
                                        "the desired template spec."),
        _column("Available", "string", "Total number of available pods (ready for at least minReadySeconds) "
                                       "targeted by this deployment."),
        _AGE,
        _column("Containers", "string", "Names of each container in the template.", 1),
        _column("Images", "string", "Images referenced by each container in the template.", 1),
        _column("Selector", "string", "Label selector for pods. Existing ReplicaSets whose pods are selected by "
                                      "this will be the ones affected by this deployment.", 1),
    ],
    "ReplicaSet": [
        _NAME,
        _column("Desired", "integer", "Replicas is the number of desired replicas. This is a pointer to distinguish "
                                      "between explicit zero and unspecified. Defaults to 1. More info: "
                                      "https://kubernetes.io/docs/concepts/workloads/controllers/replicati"
                                      "oncontroller/#what-is-a-replicationcontroller"),
        _column("Current", "integer", "Replicas is the most recently oberved number of replicas. More info: "
                                      "https://kubernetes.io/docs/concepts/workloads/controllers/replicati"
                                      "oncontroller/#what-is-a-replicationcontroller"),
        _column("Ready", "integer", "The number of ready replicas for this replica set."),
        _AGE,
        _column("Containers", "string", "Names of each container in the template.", 1),
        _column("Images", "string", "Images referenced by each container in the template.", 1),
        _column("Selector", "string", "Selector is a label query over pods that should match the replica count. If "
                                      "the selector is empty, it is defaulted to the labels present on the pod "
                                      "template. Label keys and values that must match in order to be controlled "
                                      "by this replica set. More info: "
                                      "https://kubernetes.io/docs/concepts/overview/working-with-objects/l"
                                      "abels/#label-selectors", 1),
    ],
    "Pod": [
        _NAME,
        _column("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
        _column("Status", "string", "The aggregate status of the containers in this pod."),
        _column("Restarts", "integer", "The number of times the containers in this pod have been restarted."),
        _AGE,
        _column("IP", "string", "IP address allocated to the pod. Routable at least within the cluster. Empty if "
                                "not yet allocated.", 1),
        _column("Node", "string", "NodeName is a request to schedule this pod onto a specific node. If it is "
                                  "non-empty, the scheduler simply schedules this pod onto that node, assuming "
                                  "that it fits resource requirements.", 1),
        _column("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the "
                                            "node, but it cannot be scheduled right away as preemption victims "
                                            "receive their graceful termination periods. This field does not "
                                            "guarantee that the pod will be scheduled on this node. Scheduler may "
                                            "decide to place the pod elsewhere if other nodes become available "
                                            "sooner. Scheduler may also decide to give the resources on this node "
                                            "to a higher priority pod that is created after preemption. As a "
                                            "result, this field may be different than PodSpec.nodeName when the "
                                            "pod is scheduled.", 1),
        _column("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod "
                                             "readiness. A pod is ready when all its containers are ready AND all "
                                             "conditions specified in the readiness gates have status equal to "
                                             "\"True\" More info: "
                                             "https://git.k8s.io/enhancements/keps/sig-network/0007-pod-re"
                                             "ady%2B%2B.md", 1),
    ],
    "Service": [
        _NAME,
        _column("Type", "string", "type determines how the Service is exposed. Defaults to ClusterIP. Valid options "
                                  "are ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" "
                                  "allocates a cluster-internal IP address for load-balancing to endpoints. "
                                  "Endpoints are determined by the selector or if that is not specified, by manual "
                                  "construction of an Endpoints object or EndpointSlice objects. If clusterIP is "
                                  "\"None\", no virtual IP is allocated and the endpoints are published as a set "
                                  "of endpoints rather than a virtual IP. \"NodePort\" builds on ClusterIP and "
                                  "allocates a port on every node which routes to the same endpoints as the "
                                  "clusterIP. \"LoadBalancer\" builds on NodePort and creates an external "
                                  "load-balancer (if supported in the current cloud) which routes to the same "
                                  "endpoints as the clusterIP. \"ExternalName\" aliases this service to the "
                                  "specified externalName. Several other fields do not apply to ExternalName "
                                  "services. More info: "
                                  "https://kubernetes.io/docs/concepts/services-networking/service/#publis"
                                  "hing-services-service-types"),
        _column("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned "
                                        "randomly. If an address is specified manually, is in-range (as per system "
                                        "configuration), and is not in use, it will be allocated to the service; "
                                        "otherwise creation of the service will fail. This field may not be "
                                        "changed through updates unless the type field is also being changed to "
                                        "ExternalName (which requires this field to be blank) or the type field is "
                                        "being changed from ExternalName (in which case this field may optionally "
                                        "be specified, as describe above).  Valid values are \"None\", empty "
                                        "string (\"\"), or a valid IP address. Setting this to \"None\" makes a "
                                        "\"headless service\" (no virtual IP), which is useful when direct "
                                        "endpoint connections are preferred and proxying is not required.  Only "
                                        "applies to types ClusterIP, NodePort, and LoadBalancer. If this field is "
                                        "specified when creating a Service of type ExternalName, creation will "
                                        "fail. This field will be wiped when updating a Service to type "
                                        "ExternalName. More info: "
                                        "https://kubernetes.io/docs/concepts/services-networking/service/#"
                                        "virtual-ips-and-service-proxies"),
        _column("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will "
                                         "also accept traffic for this service.  These IPs are not managed by "
                                         "Kubernetes.  The user is responsible for ensuring that traffic arrives "
                                         "at a node with this IP.  A common example is external load-balancers "
                                         "that are not part of the Kubernetes system."),
        _column("Port(s)", "string", "The list of ports that are exposed by this service. More info: "
                                     "https://kubernetes.io/docs/concepts/services-networking/service/#vir"
                                     "tual-ips-and-service-proxies"),
        _AGE,
        _column("Selector", "string", "Route service traffic to pods with label keys and values matching this "
                                      "selector. If empty or not present, the service is assumed to have an "
                                      "external process managing its endpoints, which Kubernetes will not modify. "
                                      "Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if "
                                      "type is ExternalName. More info: "
                                      "https://kubernetes.io/docs/concepts/services-networking/service/", 1),
    ],
    "Event": [
        _column("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
        _column("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
        _column("Reason", "string", "This should be a short, machine understandable string that gives the reason "
                                    "for the transition into the object's current status."),
        _column("Object", "string", "The object that this event is about."),
        _column("Subobject", "string", "If referring to a piece of an object instead of an entire object, this "
                                       "string should contain a valid JSON/Go field access statement, such as "
                                       "desiredState.manifest.containers[2]. For example, if the object reference "
                                       "is to a container within a pod, this would take on a value like: "
                                       "\"spec.containers{name}\" (where \"name\" refers to the name of the "
                                       "container that triggered the event) or if no container name is specified "
                                       "\"spec.containers[2]\" (container with index 2 in this pod). This syntax "
                                       "is chosen only to have some well-defined way of referencing a part of an "
                                       "object.", 1),
        _column("Source", "string", "The component reporting this event. Should be a short machine understandable "
                                    "string.", 1),
        _column("Message", "string", "A human-readable description of the status of this operation."),
        _column("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is "
                                        "in TypeMeta.)", 1),
        _column("Count", "string", "The number of times this event has occurred.", 1),
        _column("Name", "string", NAME, 1, format_="name"),
    ],
    "Namespace": [
        _NAME,
        _column("Status", "string", "The status of the namespace"),
        _AGE,
    ],
    "ConfigMap": [
        _NAME,
        _column("Data", "string", "Data contains the configuration data. Each key must consist of alphanumeric "
                                  "characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the "
                                  "BinaryData field. The keys stored in Data must not overlap with the keys in the "
                                  "BinaryData field, this is enforced during validation process."),
        _AGE,
    ],
    "Lease": [
        _NAME,
        _column("Holder", "string", "holderIdentity contains the identity of the holder of a current lease."),
        _AGE,
    ],
    "PodDisruptionBudget": [
        _NAME,
        _column("Min Available", "string", "The minimum number of pods that must be available."),
        _column("Max Unavailable", "string", "The maximum number of pods that may be unavailable."),
        _column("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time."),
        _AGE,
    ],
}
