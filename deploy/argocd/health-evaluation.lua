-- Argo CD health check of kubetune.dev Evaluation (resource.customizations.health.kubetune.dev_Evaluation).
-- Healthy once a model passed every criterion; Degraded when the run failed or nothing passed.
local hs = {status = "Progressing", message = "Waiting for the kubetune operator"}

local function condition(ctype)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == ctype and c.status == "True" then
        return c
      end
    end
  end
  return nil
end

local function message(default)
  for _, ctype in ipairs({"Failed", "Stalled", "Ready", "Reconciling"}) do
    local c = condition(ctype)
    if c ~= nil and c.message ~= nil and c.message ~= "" then
      return c.message
    end
  end
  if obj.status ~= nil and obj.status.message ~= nil and obj.status.message ~= "" then
    return obj.status.message
  end
  return default
end

if obj.status == nil or obj.status.phase == nil then
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local phase = obj.status.phase
if phase == "Failed" or condition("Stalled") ~= nil then
  hs.status = "Degraded"
  hs.message = message("Failed")
elseif phase == "Succeeded" and obj.status.passed == true then
  hs.status = "Healthy"
  local best = obj.status.best
  hs.message = message(best ~= nil and ("Passed; best " .. best) or "Passed")
elseif phase == "Succeeded" then
  hs.status = "Degraded"
  hs.message = message("No model met the pass criteria")
else -- Pending, Running
  hs.status = "Progressing"
  hs.message = message(phase)
end
return hs
