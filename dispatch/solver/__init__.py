"""`solve(problem, params) -> Result`: plan a day's routes.

Pipeline, within `time_limit_s`:
1. Pre-check (`precheck`): jobs no crew can ever do get their reason up front and stay out.
2. VROOM (`vroom_adapter`, pyvroom) builds first routes at exploration level 5 on all
   workers' threads.
3. Each worker (1 or 2 processes, `search`) walks on from there with a VROOM-driven large
   neighbourhood search (`lns`: remove up to 30 % of the jobs, as strings from
   neighbouring routes or a cluster, or move a string of one route to an idle vehicle;
   VROOM re-inserts and polishes the touched routes only), because VROOM alone stops at
   its first local optimum and OR-Tools' GLS improves a strong start only slowly.
4. OR-Tools (`ortools_model`, the model of record and the only ortools import) reads the
   best routes under the full constraint set (breaks, locks, route duration, skills,
   capacities, windows, drop penalties) after a repair pass for what VROOM cannot model,
   and improves them with guided local search for the last `ortools_share` of the time.
   If it rejects the routes it builds its own with parallel cheapest insertion, which
   copes with tight windows.
5. The better worker's plan is re-timed (`timing`) and checked by the validator.
"""

from dispatch.solver.params import SolveParams
from dispatch.solver.precheck import precheck
from dispatch.solver.search import solve
from dispatch.solver.vroom_adapter import vroom_routes

__all__ = ["SolveParams", "precheck", "solve", "vroom_routes"]
