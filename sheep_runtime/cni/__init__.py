"""CNI front door: the thin plugin (`plugin.py`, standalone) and sheepd's endpoint
for it (`server.py`). Deliberately empty: the `sheep-cni` console script imports this
package, and every import here would slow each plugin call."""
